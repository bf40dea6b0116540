"""JOSH: beam search over conversations, collapsing on sparse rewards. Knows no environment, agent or model."""

from josh.search.beam import JoshSearch
from josh.search.beam_config import SearchConfig
from josh.search.protocol import AgentOutcome, Branch, UserOutcome
from josh.search.tree import Node, NodeRecord, Tree, TreeRecord, tree_problem

__all__ = [
    "AgentOutcome",
    "Branch",
    "JoshSearch",
    "Node",
    "NodeRecord",
    "SearchConfig",
    "Tree",
    "TreeRecord",
    "UserOutcome",
    "tree_problem",
]
