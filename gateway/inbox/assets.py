"""The inbox's stylesheet and script, served from ``/inbox/static/`` (no inline code, so
every page can forbid inline scripts and styles in its Content-Security-Policy)."""
from __future__ import annotations

CSS = """
:root { --fg: #1b1b1b; --bg: #ffffff; --muted: #4a4a4a; --line: #c8c8c8; --accent: #0b57d0;
        --danger: #b00020; --danger-bg: #fdecee; --ok-bg: #e8f5e9; --info-bg: #e8f0fe; --focus: #ffbf47; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible,
main:focus-visible, summary:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; box-shadow: 0 0 0 5px #1b1b1b; }
.skip { position: absolute; left: -9999px; top: 0; background: #fff; padding: .5rem 1rem; z-index: 10; }
.skip:focus { left: .5rem; }
.visually-hidden { position: absolute !important; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.top { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem; padding: .5rem 1rem; border-bottom: 2px solid var(--line); }
.brand { margin: 0; font-weight: 700; }
.brand a { color: var(--fg); text-decoration: none; }
.top nav ul { display: flex; flex-wrap: wrap; gap: .25rem 1rem; list-style: none; margin: 0; padding: 0; }
.top nav a[aria-current="page"] { font-weight: 700; color: var(--fg); }
.logout { margin-left: auto; display: flex; align-items: center; gap: .5rem; }
main { padding: 1rem; max-width: 90rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; overflow-wrap: anywhere; }
button { font: inherit; padding: .45rem 1rem; border: 2px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; cursor: pointer; min-height: 44px; }
.logout button, form.inline button { background: #fff; color: var(--accent); }
input, select, textarea { font: inherit; padding: .4rem; border: 1px solid #767676; border-radius: 4px; max-width: 100%; }
textarea { width: 100%; }
label { display: block; font-weight: 600; }
.login { max-width: 24rem; }
.login input { width: 100%; }
.filters { display: flex; flex-wrap: wrap; gap: 0 1rem; align-items: flex-end; }
.filters p { margin: .25rem 0; }
.filter-buttons { display: flex; gap: 1rem; align-items: center; }
.counts ul { display: flex; flex-wrap: wrap; gap: .25rem 1.25rem; list-style: none; padding: 0; margin: 0; }
.counts h2 { font-size: 1rem; }
.live { color: var(--muted); }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .45rem .5rem; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
thead th { border-bottom: 2px solid var(--fg); overflow-wrap: normal; white-space: nowrap; }
td time, td a[href*="/complaints/"] { white-space: nowrap; }
tr.is-new { background: var(--info-bg); }
.excerpt { max-width: 32rem; }
.cell-label { display: none; }
.tag { display: inline-block; font-size: .8rem; padding: 0 .4rem; border: 1px solid var(--muted); border-radius: 3px; color: var(--muted); }
.urgency-immediate { color: var(--danger); font-weight: 700; }
.urgency-high { font-weight: 700; }
.deadline.is-overdue { color: var(--danger); font-weight: 700; }
.deadline.is-overdue::before { content: "\\26A0\\FE0E  "; }
.flash { padding: .6rem 1rem; border-radius: 4px; border: 1px solid var(--line); list-style-position: inside; }
.flash-error { background: var(--danger-bg); border-color: var(--danger); }
.flash-ok { background: var(--ok-bg); }
.flash-info { background: var(--info-bg); }
.meta, .hint { color: var(--muted); font-size: .9rem; }
.hint { display: block; }
.columns { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 1fr); gap: 2rem; }
.complaint-text, .action-text { white-space: pre-wrap; overflow-wrap: anywhere; border-left: 4px solid var(--line); padding-left: 1rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f6f6; padding: .75rem; }
iframe.original { width: 100%; height: 24rem; border: 1px solid var(--line); }
.facts dt { font-weight: 700; margin-top: .5rem; }
.facts dd { margin: 0; overflow-wrap: anywhere; }
ul.plain { list-style: none; padding: 0; margin: 0; }
.action-buttons { display: flex; flex-wrap: wrap; gap: .75rem; }
form.inline { display: inline; }
.suggestions li { margin-bottom: .75rem; }
@media (max-width: 48rem) {
  .columns { grid-template-columns: 1fr; }
  table, thead, tbody, tr, th, td { display: block; }
  thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  tr { border: 1px solid var(--line); border-radius: 4px; margin-bottom: .75rem; padding: .25rem .5rem; }
  td { border: 0; padding: .15rem 0; }
  .cell-label { display: inline-block; min-width: 7rem; font-weight: 600; color: var(--muted); }
  .logout { margin-left: 0; }
  .filters { display: block; }
  .filters input, .filters select { width: 100%; }
}
"""

JS = """
(function () {
  "use strict";
  var table = document.getElementById("complaints");
  if (!table || !window.EventSource) { return; }
  var rows = document.getElementById("rows");
  var status = document.getElementById("live-status");
  var counts = document.getElementById("channel-counts");
  var lost = false;
  var deadlinesDue = null;

  /* the counts per deadline, read again a second after a registration or an action (several
     at once: once), and every minute, since a deadline passes with the clock */
  function refreshDeadlines() {
    var list = document.getElementById("deadline-counts");
    if (!list) { return; }
    fetch(table.getAttribute("data-deadline-counts"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("deadline-counts");
        if (fresh) { list.innerHTML = fresh.innerHTML; }
      })
      .catch(function () {});
  }
  function deadlinesChanged() {
    if (deadlinesDue === null) {
      deadlinesDue = setTimeout(function () { deadlinesDue = null; refreshDeadlines(); }, 1000);
    }
  }
  setInterval(refreshDeadlines, 60000);

  function say(text, state) { status.textContent = text; status.setAttribute("data-state", state); }

  function bumpCount(channel) {
    var items = counts.querySelectorAll("li[data-channel]");
    for (var i = 0; i < items.length; i++) {
      if (items[i].getAttribute("data-channel") === channel) {
        var n = items[i].querySelector(".count");
        n.textContent = String(parseInt(n.textContent, 10) + 1);
        return;
      }
    }
    var none = counts.querySelector("li.none");
    if (none) { none.parentNode.removeChild(none); }
    var item = document.createElement("li");
    var link = document.createElement("a");
    var count = document.createElement("span");
    item.setAttribute("data-channel", channel);
    link.href = "?channel=" + encodeURIComponent(channel);
    link.textContent = channel;
    count.className = "count";
    count.textContent = "1";
    item.appendChild(link);
    item.appendChild(document.createTextNode(": "));
    item.appendChild(count);
    counts.appendChild(item);
  }

  function addRow(data) {
    var old = document.getElementById("row-" + data.id);
    if (old) { old.parentNode.removeChild(old); }
    var holder = document.createElement("tbody");
    holder.innerHTML = data.html;  /* rendered and escaped by the server */
    var row = holder.querySelector("tr");
    if (!row) { return; }
    row.classList.add("is-new");
    rows.insertBefore(row, rows.firstChild);
    var empty = document.getElementById("empty");
    if (empty) { empty.parentNode.removeChild(empty); }
    if (!old) { bumpCount(data.channel); }
    say(status.getAttribute("data-new") + ": " + (data.number || ""), "on");
  }

  function updateState(data) {
    var all = rows.querySelectorAll("tr[data-number]");
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute("data-number") === data.registration_number) {
        var cell = all[i].querySelector("td.state .value");
        if (cell) { cell.textContent = data.text; }
      }
    }
  }

  function markUndelivered(data) {
    var all = rows.querySelectorAll("tr[data-number]");
    for (var i = 0; i < all.length; i++) {
      var cell = all[i].querySelector("td.number");
      if (all[i].getAttribute("data-number") === data.registration_number && cell &&
          !cell.querySelector(".tag-undelivered")) {
        var tag = document.createElement("span");
        tag.className = "tag tag-undelivered";
        tag.textContent = data.text;
        cell.appendChild(document.createTextNode(" "));
        cell.appendChild(tag);
      }
    }
  }

  function resync() {
    fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("rows");
        var freshCounts = doc.getElementById("channel-counts");
        if (fresh) { rows.innerHTML = fresh.innerHTML; }
        if (freshCounts) { counts.innerHTML = freshCounts.innerHTML; }
        refreshDeadlines();
      })
      .catch(function () {});
  }

  var source = new EventSource(table.getAttribute("data-events"));
  source.addEventListener("hello", function () {
    say(status.getAttribute("data-connected"), "on");
    if (lost) { lost = false; resync(); }
  });
  source.addEventListener("row", function (e) { addRow(JSON.parse(e.data)); deadlinesChanged(); });
  source.addEventListener("state", function (e) { updateState(JSON.parse(e.data)); deadlinesChanged(); });
  source.addEventListener("undelivered", function (e) { markUndelivered(JSON.parse(e.data)); });
  source.addEventListener("resync", function () { resync(); });
  source.onerror = function () { lost = true; say(status.getAttribute("data-disconnected"), "off"); };
})();
"""
