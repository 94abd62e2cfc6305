// The recommendations page: a user's recent listens and blended recommendations, playing a
// track (POST /events) and similar tracks. Tracks show their names when the API gives them
// and their ids otherwise.
"use strict";

// Recommendations asked per page; lowered to the service's max_k when that is smaller.
let K = 10;
// The largest `offset` the service accepts (service.max_offset, from /health).
let maxOffset = 0;
// Sources of the base part of a blend; every other source is the online part.
const BASE_SOURCES = ["offline", "popular"];

let currentUser = null;
let shownTracks = new Set();
// The recommendations shown, every page loaded so far.
let shownRecs = [];

// A track from an API list: an object with `track_id`, or a bare id.
function asTrack(item) {
  return typeof item === "object" && item !== null ? item : { track_id: item };
}

function trackRow(item, actions) {
  const t = asTrack(item);
  const by = [(t.artists || []).join(", "), t.album].filter(Boolean).join(" · ");
  const genres = (t.genres || []).join(", ");
  const source = t.source
    ? el("span", { class: "source " + (BASE_SOURCES.includes(t.source) ? "base" : "online") }, t.source)
    : null;
  const score = typeof t.score === "number" ? el("span", { class: "score", title: "score" }, t.score.toFixed(3)) : null;
  return el(
    "li",
    { class: "track", "data-track": t.track_id, "data-source": t.source || null },
    el(
      "div",
      { class: "what" },
      el("span", { class: "name" }, t.name || "track " + t.track_id),
      t.name ? el("span", { class: "id" }, "#" + t.track_id) : null,
      by || genres ? el("span", { class: "meta" }, by, genres ? el("span", { class: "genres" }, by ? " · " + genres : genres) : null) : null,
    ),
    source,
    score,
    el(
      "span",
      { class: "actions" },
      actions.play
        ? el("button", { type: "button", class: "play", title: "post a listen of this track", onclick: () => play(t.track_id) }, "▶ play")
        : null,
      el("button", { type: "button", class: "similar", title: "tracks similar to this one", onclick: () => similar(t.track_id) }, "similar"),
    ),
  );
}

function fill(list, items, actions, empty) {
  list.replaceChildren(...items.map((item) => trackRow(item, actions)));
  if (!items.length) list.append(el("li", { class: "empty" }, empty));
}

// "online 4 (als 2, fold_in 2) · offline 6".
function mixSummary(items) {
  const counts = {};
  for (const item of items) counts[item.source] = (counts[item.source] || 0) + 1;
  const online = Object.entries(counts).filter(([s]) => !BASE_SOURCES.includes(s));
  const parts = [];
  const total = online.reduce((n, [, c]) => n + c, 0);
  if (total) parts.push("online " + total + " (" + online.map(([s, c]) => s + " " + c).join(", ") + ")");
  for (const s of BASE_SOURCES) if (counts[s]) parts.push(s + " " + counts[s]);
  return parts.join(" · ");
}

async function showUser(user) {
  const [events, recs] = await Promise.all([
    api("/events?user_id=" + encodeURIComponent(user)),
    api("/recommendations?user_id=" + encodeURIComponent(user) + "&k=" + K),
  ]);
  const sameUser = currentUser === String(user);
  currentUser = String(user);
  history.replaceState(null, "", "#user=" + encodeURIComponent(currentUser));
  document.getElementById("user-id").value = currentUser;
  document.getElementById("recent-panel").hidden = false;
  document.getElementById("recs-panel").hidden = false;
  const recent = events.events || [];
  fill(document.getElementById("recent"), recent, { play: true }, "none yet: play a track");
  document.getElementById("recent-note").textContent = "user " + currentUser + ", newest first";
  const items = recs.recommendations || [];
  fill(document.getElementById("recs"), items, { play: true }, "no recommendations");
  shownRecs = items;
  showMore(items.length);
  // What a listen changed: the tracks that were not there before it.
  if (sameUser) {
    for (const row of document.querySelectorAll("#recs li.track")) {
      if (!shownTracks.has(row.dataset.track)) row.classList.add("new");
    }
  }
  shownTracks = new Set(items.map((i) => String(i.track_id)));
}

// The mix of what is shown, and the "more" button while a next page can exist: the last page
// was full and its offset is one the service accepts.
function showMore(lastPage) {
  document.getElementById("mix").textContent = mixSummary(shownRecs);
  document.getElementById("more").hidden = lastPage < K || shownRecs.length > maxOffset;
}

// The next page of the current user's recommendations (`offset`), appended to the list.
async function more() {
  await run(async () => {
    const offset = shownRecs.length;
    const recs = await api(
      "/recommendations?user_id=" + encodeURIComponent(currentUser) + "&k=" + K + "&offset=" + offset,
    );
    const items = recs.recommendations || [];
    document.getElementById("recs").append(...items.map((item) => trackRow(item, { play: true })));
    shownRecs = shownRecs.concat(items);
    for (const item of items) shownTracks.add(String(item.track_id));
    showMore(items.length);
    return "";
  });
}

async function play(track) {
  if (currentUser === null) {
    showStatus("choose a user first: a listen is one user's", true);
    return;
  }
  await run(async () => {
    await api("/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: Number(currentUser), track_id: Number(track) }),
    });
    await showUser(currentUser);
    return "user " + currentUser + " played track " + track + "; new recommendations are marked";
  });
}

async function similar(track) {
  await run(async () => {
    const body = await api("/similar?track_id=" + encodeURIComponent(track) + "&k=" + K);
    const of = body.track ? asTrack(body.track) : { track_id: body.track_id };
    document.getElementById("track-id").value = of.track_id;
    document.getElementById("similar-of").textContent = "of " + (of.name ? of.name + " #" + of.track_id : "track " + of.track_id);
    fill(document.getElementById("similar"), body.similar || [], { play: true }, "no similar tracks");
    document.getElementById("similar").scrollIntoView({ block: "nearest" });
    return "";
  });
}

// Runs an action, showing its message or its error.
async function run(action) {
  try {
    showStatus(await action(), false);
  } catch (e) {
    showStatus(e.status ? e.message + " (" + e.status + ")" : String(e), true);
  }
}

async function start() {
  document.getElementById("find").onsubmit = (e) => {
    e.preventDefault();
    const user = document.getElementById("user-id").value.trim();
    run(async () => (await showUser(user), ""));
  };
  document.getElementById("random").onclick = () =>
    run(async () => {
      const body = await api("/users/random");
      await showUser(body.user_id);
      return "";
    });
  document.getElementById("more").onclick = more;
  document.getElementById("similar-form").onsubmit = (e) => {
    e.preventDefault();
    similar(document.getElementById("track-id").value.trim());
  };
  await run(async () => {
    const health = await api("/health");
    K = Math.min(K, health.max_k);
    maxOffset = health.max_offset;
    document.getElementById("model").textContent =
      "model " + health.model_version + " · " + health.tracks + " tracks · " + health.users_with_offline + " users with offline lists";
    const user = new URLSearchParams(location.hash.slice(1)).get("user");
    if (user) await showUser(user);
    return "";
  });
}

start();
