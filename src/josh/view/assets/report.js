// josh view: lists the items of the embedded JSON, filters them by task id, shows one at a time.
// Item HTML is escaped by josh before it is embedded; record text is never handed to innerHTML here.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("josh-data").textContent);
  var items = data.items;
  var list = document.getElementById("list");
  var main = document.getElementById("main");
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");
  var rows = [];
  var current = -1;

  function span(cls, text) {
    var el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  items.forEach(function (item, index) {
    var row = document.createElement("li");
    row.className = "item " + item.tone;
    row.tabIndex = 0;
    row.dataset.index = String(index);
    row.dataset.task = item.task;
    row.title = item.label;
    row.append(span("task", item.label), span("badge", item.badge), span("meta", item.meta));
    row.addEventListener("click", function () { select(index, true); });
    row.addEventListener("keydown", function (event) { move(event, index); });
    list.appendChild(row);
    rows.push(row);
  });

  function visible() {
    return rows.filter(function (row) { return !row.hidden; });
  }

  function move(event, index) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp" && event.key !== "Enter") return;
    event.preventDefault();
    if (event.key === "Enter") { select(index, true); return; }
    var open = visible();
    var at = open.indexOf(rows[index]) + (event.key === "ArrowDown" ? 1 : -1);
    if (at >= 0 && at < open.length) {
      open[at].focus();
      select(Number(open[at].dataset.index), true);
    }
  }

  function filter() {
    var needle = search.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      row.hidden = needle !== "" && row.dataset.task.toLowerCase().indexOf(needle) < 0;
      if (!row.hidden) count += 1;
    });
    shown.textContent = count === rows.length ? rows.length + " in this file" : count + " of " + rows.length + " match";
  }

  function select(index, remember) {
    if (index < 0 || index >= items.length) return;
    if (current >= 0) rows[current].classList.remove("selected");
    current = index;
    rows[index].classList.add("selected");
    main.innerHTML = items[index].html;
    main.scrollTop = 0;
    var article = main.querySelector("article");
    if (article && article.dataset.kind === "tree") wireTree(article, items[index]);
    if (remember) {
      try { history.replaceState(null, "", "#" + encodeURIComponent(items[index].key)); } catch (e) { /* some browsers refuse on file:// */ }
    }
  }

  function wireTree(article, item) {
    var cards = article.querySelectorAll(".card[data-node]");
    cards.forEach(function (card) {
      card.addEventListener("click", function () { showPath(article, item, card); });
      card.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); showPath(article, item, card); }
      });
    });
    var hide = article.querySelector("input.hide-pruned");
    function keepInView() {
      var chosen = article.querySelector(".card.selected[data-node]");
      if (chosen && chosen.offsetParent) reveal(article, chosen);
    }
    if (hide) {
      hide.addEventListener("change", function () {
        article.classList.toggle("hide-pruned", hide.checked);
        keepInView();
      });
    }
    var zoom = article.querySelector("select.zoom");
    var tree = article.querySelector(".tree");
    if (zoom && tree) {
      zoom.addEventListener("change", function () {
        tree.style.zoom = String(Number(zoom.value) / 100);
        keepInView();
      });
    }
    var golden = article.querySelectorAll(".card.golden[data-node]");  // not the legend's sample card
    var start = golden.length ? golden[golden.length - 1] : cards[0];
    if (start) {
      showPath(article, item, start);
      reveal(article, start);
    }
  }

  // Scroll the drawing so that `card` is in view: centred across, a third of the way down.
  function reveal(article, card) {
    var box = article.querySelector(".tree-scroll");
    var at = card.getBoundingClientRect();
    var frame = box.getBoundingClientRect();
    box.scrollLeft += at.left - frame.left - (box.clientWidth - at.width) / 2;
    box.scrollTop += at.top - frame.top - box.clientHeight / 3;
  }

  // The conversation from the first root down to `card`: each node's messages, in order.
  function showPath(article, item, card) {
    var byId = {};
    article.querySelectorAll(".card[data-node]").forEach(function (c) {
      c.classList.remove("selected", "on-path");
      byId[c.dataset.node] = c;
    });
    var path = [];
    var seen = {};
    for (var at = card; at && !seen[at.dataset.node]; at = byId[at.dataset.parent]) {
      seen[at.dataset.node] = true;
      path.unshift(at);
    }
    var body = article.querySelector(".path-body");
    body.replaceChildren();
    if (item.prompt !== null && item.prompt !== undefined && data.prompts[item.prompt]) {
      var holder = document.createElement("div");
      holder.innerHTML = data.prompts[item.prompt];
      body.append.apply(body, Array.prototype.slice.call(holder.childNodes));
    }
    path.forEach(function (node) {
      node.classList.add("on-path");
      var step = document.createElement("div");
      step.className = "step " + node.dataset.state;
      step.textContent = "node #" + node.dataset.node + " · " + node.dataset.state +
        (node.classList.contains("successful") ? " · successful" : "") +
        (node.classList.contains("over") ? " · the conversation ended here" : "");
      body.appendChild(step);
      var source = article.querySelector('[data-body="' + node.dataset.node + '"]');
      if (source) {
        Array.prototype.forEach.call(source.childNodes, function (child) { body.appendChild(child.cloneNode(true)); });
      }
    });
    card.classList.add("selected");
    var heading = article.querySelector(".path h3");
    if (heading) heading.textContent = "conversation up to node #" + card.dataset.node + " (" + path.length + " nodes)";
  }

  function fromHash() {
    var wanted = "";
    try { wanted = decodeURIComponent(location.hash.slice(1)); } catch (e) { wanted = ""; }
    if (!wanted) return -1;
    for (var i = 0; i < items.length; i += 1) if (items[i].key === wanted) return i;
    for (var j = 0; j < items.length; j += 1) if (items[j].task === wanted) return j;
    return -1;
  }

  search.addEventListener("input", filter);
  window.addEventListener("hashchange", function () {
    var index = fromHash();
    if (index >= 0 && index !== current) select(index, false);
  });
  filter();
  if (items.length) select(Math.max(fromHash(), 0), false);
})();
