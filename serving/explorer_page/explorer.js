// The serendipity explorer page: no framework, no network beyond this app. Every text from the server is
// set with textContent (never parsed as HTML). The request lives in the URL fragment: #item=ID&user=ID&k=N.
"use strict";

const BASE = window.location.pathname.replace(/\/+$/, "");
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function getJson(path) {
  const response = await fetch(BASE + path, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function mediaUrl(itemId, what) {
  return `${BASE}/media/${encodeURIComponent(itemId)}/${what}`;
}

function picture(src, alt) {
  const image = element("img");
  image.src = src;
  image.alt = alt;
  image.loading = "eager";
  return image;
}

function noMedia(text) {
  return element("div", "no-media", text);
}

function clusterLabel(id, description) {
  return description ? `${id} · ${description}` : `cluster ${id}`;
}

function tile(item, onPick) {
  const node = element("li", "tile");
  node.dataset.itemId = item.item_id;
  node.dataset.clusterId = item.cluster_id;
  node.title = `item ${item.item_id}`;
  node.append(
    item.has_thumbnail ? picture(mediaUrl(item.item_id, "thumbnail.jpg"), item.title || "") : noMedia("no thumbnail"),
    element("div", "title", item.title || `item ${item.item_id}`),
    element("div", "cluster", clusterLabel(item.cluster_id, item.cluster_description)),
  );
  node.addEventListener("click", () => onPick(item.item_id));
  return node;
}

function fillTiles(list, items, marked) {
  list.replaceChildren(
    ...items.map((item) => {
      const node = tile(item, pickItem);
      if (marked && marked.has(item.item_id)) node.classList.add("shared");
      return node;
    }),
  );
}

function fillPath(list, path) {
  list.replaceChildren(
    ...path.map((cluster) => {
      const entry = element("li");
      const button = element("button", "link", `L${cluster.level} ${clusterLabel(cluster.cluster_id, cluster.description)}`);
      button.type = "button";
      button.addEventListener("click", () => browseCluster(cluster.cluster_id));
      entry.append(button);
      return entry;
    }),
  );
}

// --- the request in the URL fragment ---------------------------------------------------------------
function readRequest() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  return { item: params.get("item"), user: params.get("user"), k: params.get("k") };
}

function pickItem(itemId) {
  const params = new URLSearchParams({ item: String(itemId) });
  const user = $("user").value.trim();
  const k = $("k").value.trim();
  if (user) params.set("user", user);
  if (k) params.set("k", k);
  window.location.hash = params.toString();
}

// --- search and tree ---------------------------------------------------------------------------------
let searchTimer = null;

async function search(query) {
  const section = $("search-results");
  if (!query.trim()) {
    section.hidden = true;
    return;
  }
  const found = await getJson(`/api/search?q=${encodeURIComponent(query)}`);
  fillTiles($("search-list"), found.items);
  section.hidden = false;
}

function showError(error) {
  $("error").textContent = String(error.message || error);
  $("error").hidden = false;
  document.body.dataset.state = "error";
}

function treeEntry(label, onClick) {
  const entry = element("li");
  const button = element("button", "link", label);
  button.type = "button";
  button.addEventListener("click", onClick);
  entry.append(button);
  return entry;
}

async function browseRoots() {
  const roots = await getJson("/api/roots");
  $("breadcrumb").replaceChildren();
  $("tree-list").replaceChildren(
    ...roots.clusters.map((c) => treeEntry(clusterLabel(c.cluster_id, c.description), () => browseCluster(c.cluster_id))),
  );
}

async function browseCluster(clusterId) {
  const cluster = await getJson(`/api/cluster/${encodeURIComponent(clusterId)}?members=30`);
  const crumbs = [treeEntry("all", browseRoots)];
  for (const step of cluster.path) {
    crumbs.push(treeEntry(`L${step.level} ${step.description}`, () => browseCluster(step.cluster_id)));
  }
  $("breadcrumb").replaceChildren(...crumbs.map((c) => c.firstChild));
  const entries = cluster.children.length
    ? cluster.children.map((c) => treeEntry(clusterLabel(c.cluster_id, c.description), () => browseCluster(c.cluster_id)))
    : cluster.members.map((item) => {
        const entry = treeEntry(`${item.item_id} · ${item.title}`, () => pickItem(item.item_id));
        entry.className = "item-entry";
        return entry;
      });
  $("tree-list").replaceChildren(...entries);
}

// --- one explored item -------------------------------------------------------------------------------
const SOURCE_TEXT = { serendipity: "model", fallback: "fallback", neighbours: "neighbours (no history)", error: "error" };

function showContext(data) {
  const item = data.item;
  $("context").hidden = !item;
  $("unknown-item").hidden = Boolean(item);
  if (!item) {
    $("unknown-text").textContent =
      `Item ${data.request.context_item_id} is not in the catalogue: there is no thumbnail, no frame and no model answer for it.`;
    return;
  }
  $("context-thumbnail").replaceChildren(
    item.has_thumbnail ? picture(mediaUrl(item.item_id, "thumbnail.jpg"), item.title) : noMedia("no thumbnail"),
  );
  $("context-title").textContent = item.title;
  $("context-id").textContent = `item ${item.item_id}`;
  fillPath($("context-path"), item.cluster_path);
  const frames = [];
  for (let index = 0; index < item.frame_count; index += 1) {
    frames.push(picture(mediaUrl(item.item_id, `frame/${index}.jpg`), `frame ${index + 1}`));
  }
  $("frames").replaceChildren(...(frames.length ? frames : [noMedia("text-only prompt: no frames")]));
}

function badge(text, kind) {
  return element("span", `badge ${kind || ""}`.trim(), text);
}

function showAnswer(data) {
  const served = data.served;
  const answer = data.answer;
  const fromModel = served.source === "serendipity";
  const origin = fromModel && answer ? answer.origin : SOURCE_TEXT[served.source] || served.source;
  const source = $("answer-source");
  source.textContent = origin;
  source.className = `badge ${fromModel ? (origin === "model" ? "" : "non-llm") : "fallback"}`.trim();
  const flags = [];
  if (served.degraded) flags.push(badge("degraded", "degraded"));
  if (served.cold_start) flags.push(badge("cold start: no history"));
  $("answer-flags").replaceChildren(...flags);
  const notice = $("fallback-notice");
  notice.hidden = fromModel;
  if (!fromModel) {
    notice.textContent =
      served.source === "neighbours"
        ? "Neighbours: the user has no history, so the slate is the context item's nearest items, no cluster restriction."
        : `Fallback: no model answer was used for this request${served.degraded ? " (degraded: the feature store did not answer)" : ""}; the slate is not restricted to a nominated cluster.`;
  }
  $("answer-body").hidden = !answer;
  $("answer").hidden = false;
  if (!answer) return;
  $("reasoning").textContent = answer.reasoning || "(the answer holds no reasoning)";
  $("nominated").textContent = clusterLabel(answer.cluster_id, answer.description);
  $("nominated").dataset.clusterId = answer.cluster_id;
  $("alternatives").tBodies[0].replaceChildren(
    ...answer.alternatives.map((alt) => {
      const row = element("tr", alt.cluster_id === answer.cluster_id ? "chosen" : "");
      row.append(
        element("td", "", alt.cluster_id),
        element("td", "", alt.description || ""),
        element("td", "", alt.score === null ? "-" : alt.score.toFixed(3)),
      );
      return row;
    }),
  );
  $("model-version").textContent = answer.model_version || "-";
  $("prompt-style").textContent = answer.prompt_style || "-";
}

function showSlates(data) {
  const shared = new Set(data.shared_items);
  const served = data.served;
  $("served-source").textContent = served.cluster ? `in ${clusterLabel(served.cluster.id, served.cluster.description)}` : SOURCE_TEXT[served.source] || served.source;
  $("served-list").dataset.nominatedCluster = served.cluster ? served.cluster.id : "";
  fillTiles($("served-list"), served.items, shared);
  fillTiles($("baseline-list"), data.baseline.items, shared);
  const servedClusters = new Set(served.items.map((i) => i.cluster_id));
  const baselineClusters = new Set(data.baseline.items.map((i) => i.cluster_id));
  $("slate-diff").textContent =
    `${shared.size} item(s) in both slates (outlined); served slate spans ${servedClusters.size} cluster(s), ` +
    `the baseline ${baselineClusters.size}.`;
  $("slates").hidden = false;
}

function showCluster(cluster) {
  $("cluster").hidden = !cluster;
  if (!cluster) return;
  $("cluster-title").textContent = clusterLabel(cluster.cluster_id, cluster.description);
  fillPath($("cluster-path"), cluster.path);
  fillTiles($("cluster-members"), cluster.members);
  $("cluster-siblings").replaceChildren(
    ...cluster.siblings.map((s) => treeEntry(clusterLabel(s.cluster_id, s.description), () => browseCluster(s.cluster_id))),
  );
}

async function showRequest() {
  const request = readRequest();
  if (!request.item) return;
  if (!/^\d+$/.test(request.item)) {
    showError(`not an item id: ${request.item}`);
    return;
  }
  document.body.dataset.state = "loading";
  $("user").value = request.user || "";
  if (request.k) $("k").value = request.k;
  const params = new URLSearchParams();
  if (request.user) params.set("user_id", request.user);
  if (request.k) params.set("k", request.k);
  const data = await getJson(`/api/item/${request.item}?${params}`);
  $("hint").hidden = true;
  $("error").hidden = true;
  showContext(data);
  showAnswer(data);
  showSlates(data);
  showCluster(data.cluster);
  document.body.dataset.state = "ready";
}

function start() {
  $("request-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("search").value.trim();
    if (/^\d+$/.test(query)) pickItem(query);
    else search(query).catch(showError);
  });
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search($("search").value).catch(showError), 250);
  });
  window.addEventListener("hashchange", () => showRequest().catch(showError));
  browseRoots()
    .then(showRequest)
    .then(() => {
      if (document.body.dataset.state === "idle") document.body.dataset.state = "ready";
    })
    .catch(showError);
}

document.addEventListener("DOMContentLoaded", start);
