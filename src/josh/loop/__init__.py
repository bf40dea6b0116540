"""The self-training loop (`josh loop`): evaluate, harvest, export, train, evaluate again, report.

Above every other layer: it runs the other commands as stages and reads their outputs."""
