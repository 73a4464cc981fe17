"""The page ``mmssl serve`` shows at ``/``: one HTML file with its own CSS and JavaScript.

No build step and nothing from a CDN: the page calls the server's JSON API. Choose a user to
see their training items and recommendations, by title where the dataset has titles; click an
item for its page with the most similar items. Addresses are ``#user=ID`` and ``#item=ID``, so
a view can be bookmarked (and screenshot by a headless browser).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mmssl serve</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --accent: #3559e0; --bg: #f8f9fb; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
         color: var(--fg); background: var(--bg); }
  header { background: #fff; border-bottom: 1px solid var(--line); padding: 14px 24px;
           display: flex; gap: 24px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  header .facts { color: var(--muted); font-size: 13px; }
  main { padding: 20px 24px; max-width: 1200px; }
  label { font-weight: 600; margin-right: 8px; }
  select, input { font: inherit; padding: 5px 8px; border: 1px solid var(--line);
                  border-radius: 6px; background: #fff; }
  .cols { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; margin-top: 18px; }
  @media (max-width: 800px) { .cols { grid-template-columns: 1fr; } }
  section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
  section h2 { font-size: 15px; margin: 0 0 10px; }
  ol { margin: 0; padding-left: 26px; }
  li { padding: 3px 0; border-bottom: 1px dashed var(--line); }
  li:last-child { border-bottom: 0; }
  a { color: var(--accent); text-decoration: none; cursor: pointer; }
  a:hover { text-decoration: underline; }
  .meta { color: var(--muted); font-size: 12.5px; }
  .score { float: right; color: var(--muted); font-variant-numeric: tabular-nums; font-size: 13px; }
  .new { background: #fdf0d5; color: #8a5a00; border-radius: 4px; padding: 0 5px; font-size: 12px; }
  .error { color: #b42318; }
</style>
</head>
<body>
<header>
  <h1>mmssl serve</h1>
  <div><label for="user">User</label><select id="user"></select>
    <label for="k" style="margin-left:12px">k</label>
    <input id="k" type="number" min="1" max="100" value="10" style="width:64px"></div>
  <div class="facts" id="facts">loading...</div>
</header>
<main id="main"></main>
<script>
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
  '"': "&quot;", "'": "&#39;"}[c]));
const TITLE_KEYS = ["title", "movie_title", "name"];
function title(item) {
  for (const key of TITLE_KEYS) if (item[key]) return item[key];
  return "item " + item.id;
}
function details(item) {
  return Object.entries(item).filter(([k]) => !["id", "score", "new", ...TITLE_KEYS].includes(k))
    .map(([k, v]) => esc(k) + ": " + esc(v)).join(" &middot; ");
}
function row(item) {
  const score = item.score === undefined ? "" : `<span class="score">${item.score.toFixed(3)}</span>`;
  const isNew = item.new ? ' <span class="new">new</span>' : "";
  return `<li>${score}<a href="#item=${encodeURIComponent(item.id)}">${esc(title(item))}</a>${isNew}
    <div class="meta">id ${esc(item.id)}${details(item) ? " &middot; " + details(item) : ""}</div></li>`;
}
async function get(path) {
  const r = await fetch(path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function list(heading, items, note) {
  const rows = items.length ? `<ol>${items.map(row).join("")}</ol>` : '<p class="meta">none</p>';
  return `<section><h2>${heading}</h2>${note ? `<p class="meta">${note}</p>` : ""}${rows}</section>`;
}
async function showUser(user) {
  $("user").value = user;
  const k = Math.max(1, Math.min(100, parseInt($("k").value) || 10));
  const [rec, hist] = await Promise.all([
    get(`/recommend?user=${encodeURIComponent(user)}&k=${k}`),
    get(`/users/${encodeURIComponent(user)}/history`)]);
  $("main").innerHTML = `<h2>User ${esc(user)}</h2><div class="cols">
    ${list(`Top ${k} recommendations`, rec.items, "training items left out")}
    ${list(`Training history (${hist.items.length} items)`, hist.items)}</div>`;
}
async function showItem(item) {
  const k = Math.max(1, Math.min(100, parseInt($("k").value) || 10));
  const sim = await get(`/items/${encodeURIComponent(item)}/similar?k=${k}`);
  const it = sim.item;
  $("main").innerHTML = `<p><a onclick="history.back()">&larr; back</a></p>
    <h2>${esc(title(it))}${it.new ? ' <span class="new">new</span>' : ""}</h2>
    <p class="meta">id ${esc(it.id)}${details(it) ? " &middot; " + details(it) : ""}</p>
    <div class="cols">${list(`${k} most similar items`, sim.similar,
      "cosine similarity of the model's item vectors")}</div>`;
}
async function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  try {
    if (params.get("item")) await showItem(params.get("item"));
    else await showUser(params.get("user") || $("user").value);
  } catch (e) { $("main").innerHTML = `<p class="error">${esc(e.message)}</p>`; }
}
async function start() {
  try {
    const [health, users] = await Promise.all([get("/health"), get("/users?limit=5000")]);
    $("facts").textContent = `model ${health.model || "?"} · ${health.users} users · ` +
      `${health.items} items · index ${health.index} · cold start ${health.cold_start || "none"}`;
    $("user").innerHTML = users.users.map((u) => `<option>${esc(u)}</option>`).join("");
  } catch (e) { $("facts").innerHTML = `<span class="error">${esc(e.message)}</span>`; return; }
  $("user").onchange = () => { location.hash = "user=" + encodeURIComponent($("user").value); };
  $("k").onchange = route;
  window.onhashchange = route;
  route();
}
start();
</script>
</body>
</html>
"""

__all__ = ["PAGE"]
