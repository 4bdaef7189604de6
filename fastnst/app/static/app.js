// fastnst web app: one page, three modes, no build step. The server does all the stylizing.
"use strict";

const $ = (id) => document.getElementById(id);
const models = new Map();   // id -> what /api/models says of it
const weights = new Map();  // style name -> slider value 0..100, for the chosen multi-style model

// ---- messages --------------------------------------------------------------------------------------
function showMessage(text) { $("message").textContent = text; $("message").hidden = false; }
function clearMessage() { $("message").hidden = true; $("message").textContent = ""; }
async function errorOf(response) {
  try { return (await response.json()).error || response.statusText; } catch { return `${response.status} ${response.statusText}`; }
}

// ---- models and styles -----------------------------------------------------------------------------
async function loadModels(select) {
  const response = await fetch("/api/models");
  if (!response.ok) { showMessage(await errorOf(response)); return; }
  const data = await response.json();
  $("model").replaceChildren();
  for (const m of data.models) addModel(m);
  chooseModel(select || data.default);
}

function addModel(m) {
  models.set(m.id, m);
  if (![...$("model").options].some((o) => o.value === m.id)) {
    const label = m.styles.length ? `${m.id} (${m.styles.length} styles)` : m.id;
    $("model").append(new Option(m.uploaded ? `${label}, uploaded` : label, m.id));
  }
}

function chooseModel(id) {
  $("model").value = id;
  const m = models.get(id);
  const net = m.network && m.network.channels ? `${m.network.channels}-channel network` : "";
  $("model-info").textContent = [net, m.steps ? `${m.steps} steps` : "", m.description].filter(Boolean).join(" · ");
  $("model-info").title = m.description || "";
  weights.clear();
  m.styles.forEach((s) => weights.set(s, s === m.default_style ? 100 : 0));  // a fitted painting's own style
  renderSliders(m.styles);
  changed();
}

function renderSliders(styles) {
  $("styles").hidden = styles.length === 0;
  const rows = styles.map((name) => {
    const row = document.createElement("div");
    row.className = "slider";
    const solo = document.createElement("button");
    solo.textContent = name.replaceAll("_", " ");
    solo.title = `${name} alone`;
    solo.dataset.solo = name;
    const range = Object.assign(document.createElement("input"), { type: "range", min: 0, max: 100, value: weights.get(name) });
    range.dataset.style = name;
    const value = document.createElement("output");
    value.textContent = `${weights.get(name)}%`;
    range.addEventListener("input", () => { weights.set(name, +range.value); value.textContent = `${range.value}%`; changed(); });
    solo.addEventListener("click", () => {
      for (const key of weights.keys()) weights.set(key, key === name ? 100 : 0);
      renderSliders(styles); changed();
    });
    row.append(solo, range, value);
    return row;
  });
  $("style-sliders").replaceChildren(...rows);
}

function styleSpec() {
  if (weights.size === 0) return "";
  const chosen = [...weights].filter(([, w]) => w > 0);
  // All sliders at zero is sent as such: the server explains why that cannot be stylized.
  return (chosen.length ? chosen : [[[...weights.keys()][0], 0]]).map(([s, w]) => `${s}:${w / 100}`).join(",");
}

function settings() {
  return { model: $("model").value, style: styleSpec(), strength: +$("strength").value / 100,
           preserve_color: $("preserve-color").checked };
}

function formWith(fields) {
  const form = new FormData();
  for (const [key, value] of Object.entries({ ...settings(), ...fields })) form.append(key, value);
  return form;
}

let changeTimer = null;
function changed() {
  clearTimeout(changeTimer);
  changeTimer = setTimeout(() => { if (photo) stylizePhoto(); webcam.sendSettings(); }, 150);
}

$("model").addEventListener("change", () => chooseModel($("model").value));
$("strength").addEventListener("input", () => { $("strength-value").textContent = `${$("strength").value}%`; changed(); });
$("preserve-color").addEventListener("change", changed);
$("size").addEventListener("change", changed);
$("model-input").addEventListener("change", async () => {
  const file = $("model-input").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("model", file);
  const response = await fetch("/api/models", { method: "POST", body: form });
  $("model-input").value = "";
  if (!response.ok) { showMessage(await errorOf(response)); return; }
  clearMessage();
  const m = await response.json();
  addModel(m);
  chooseModel(m.id);
});

// ---- add a style -----------------------------------------------------------------------------------
// A dropped painting is fitted on the server (one at a time); the page polls its progress and preview.
const fit = { id: null, previews: 0, timer: null };

function soloStyle(name) {
  for (const key of weights.keys()) weights.set(key, key === name ? 100 : 0);
  renderSliders([...weights.keys()]);
  changed();
}

async function previewPhoto() {
  // What the user is looking at: a camera frame in webcam mode, else the chosen photo (the server shrinks it).
  if (webcam.stream) {
    const canvas = Object.assign(document.createElement("canvas"), { width: 320, height: 240 });
    canvas.getContext("2d").drawImage($("camera"), 0, 0, canvas.width, canvas.height);
    return await new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.85));
  }
  return photo;
}

function minutes(seconds) {
  return seconds >= 90 ? `about ${Math.round(seconds / 60)} min left` : `about ${Math.max(1, Math.round(seconds))} s left`;
}

async function startFit(file) {
  const form = new FormData();
  form.append("painting", file);
  const current = models.get($("model").value);
  if (current && current.styles.length) form.append("base", current.id);  // grow the multi-style model in use
  const preview = await previewPhoto();
  if (preview) form.append("photo", preview, "preview.jpg");
  const response = await fetch("/api/styles", { method: "POST", body: form });
  if (!response.ok) { showMessage(await errorOf(response)); return; }
  clearMessage();
  fit.id = (await response.json()).id;
  fit.previews = 0;
  $("fit").hidden = false;
  $("fit-cancel").hidden = false;
  $("fit-download").hidden = true;
  $("fit-preview").removeAttribute("src");
  $("fit-status").textContent = `starting on ${file.name}…`;
  pollFit(fit.id);
}

async function pollFit(id) {
  if (id !== fit.id) return;
  const response = await fetch(`/api/styles/${id}`);
  if (!response.ok) { showMessage(await errorOf(response)); return; }
  const s = await response.json();
  $("fit-progress").value = s.steps ? s.step / s.steps : 0;
  if (s.previews > fit.previews) {
    fit.previews = s.previews;
    $("fit-preview").src = `/api/styles/${id}/preview?n=${s.previews}`;
  }
  if (s.state === "running" || s.state === "starting" || s.state === "waiting") {
    $("fit-status").textContent = s.state === "starting" ? `loading (${s.name})…`
      : s.state === "waiting" ? `${s.name}: waiting for another fit of this painting to finish…`
      : `${s.name}: step ${s.step} of ${s.steps} · loss ${s.loss.toFixed(3)} · ${minutes(s.eta)}`;
    fit.timer = setTimeout(() => pollFit(id), 1000);
    return;
  }
  $("fit-cancel").hidden = true;
  if (s.state === "done") {
    $("fit-progress").value = 1;
    await loadModels(s.model);
    soloStyle(s.style);
    $("fit-download").href = `/api/models/${encodeURIComponent(s.model)}/file`;
    $("fit-download").hidden = false;
    $("fit-status").textContent = `${s.name} is now the style “${s.style}” of ${s.model}`;
  } else {
    $("fit-status").textContent = s.state === "cancelled" ? "cancelled" : "";
    if (s.state === "error") showMessage(s.error);
  }
}

$("painting-input").addEventListener("change", () => {
  const file = $("painting-input").files[0];
  $("painting-input").value = "";
  if (file) startFit(file);
});
$("fit-cancel").addEventListener("click", async () => {
  if (!fit.id) return;
  const response = await fetch(`/api/styles/${fit.id}/cancel`, { method: "POST" });
  if (!response.ok) showMessage(await errorOf(response));
});

// ---- photo mode ------------------------------------------------------------------------------------
let photo = null;        // the chosen File
let photoRequest = null; // AbortController of the preview in flight

function setPhoto(file) {
  if (!file) return;
  clearTimeout(changeTimer);  // a control moved just before: this preview includes it
  photo = file;
  clearMessage();
  URL.revokeObjectURL($("original").src);
  $("original").src = URL.createObjectURL(file);
  $("download").disabled = false;
  stylizePhoto();
}

// Formats a browser cannot show (TIFF) are previewed by the server at strength 0: the photo itself.
$("original").addEventListener("error", async () => {
  if (!photo || $("original").dataset.fallback === photo.name) return;
  $("original").dataset.fallback = photo.name;
  const response = await fetch("/api/stylize", { method: "POST", body: formWith({ image: photo, strength: 0, size: $("size").value }) });
  if (response.ok) $("original").src = URL.createObjectURL(await response.blob());
});

async function stylizePhoto() {
  if (photoRequest) photoRequest.abort();
  photoRequest = new AbortController();
  const started = performance.now();
  $("photo-status").textContent = "stylizing…";
  try {
    const response = await fetch("/api/stylize", { method: "POST", body: formWith({ image: photo, size: $("size").value }),
                                                   signal: photoRequest.signal });
    if (response.status === 204) return;
    if (!response.ok) { showMessage(await errorOf(response)); $("photo-status").textContent = ""; return; }
    clearMessage();
    const ms = response.headers.get("X-Fastnst-Ms"), engine = response.headers.get("X-Fastnst-Engine");
    const blob = await response.blob();
    URL.revokeObjectURL($("result").src);
    $("result").src = URL.createObjectURL(blob);
    await $("result").decode().catch(() => {});
    const total = Math.round(performance.now() - started);
    $("result").dataset.previews = +($("result").dataset.previews || 0) + 1;  // tests and benchmarks wait on it
    $("photo-status").textContent = `${$("result").naturalWidth} × ${$("result").naturalHeight} px: stylized in ${ms} ms `
      + `(${engine}), ${total} ms in all`;
  } catch (err) {
    if (err.name !== "AbortError") showMessage(`the server did not answer (${err.message})`);
  }
}

$("photo-input").addEventListener("change", () => setPhoto($("photo-input").files[0]));
for (const name of ["dragenter", "dragover"]) $("drop").addEventListener(name, (e) => { e.preventDefault(); $("drop").classList.add("over"); });
for (const name of ["dragleave", "drop"]) $("drop").addEventListener(name, () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { e.preventDefault(); setPhoto(e.dataTransfer.files[0]); });
// A pasted image (a screenshot, a copied photo) goes to photo mode.
document.addEventListener("paste", (e) => {
  const file = [...e.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (!file) return;
  document.querySelector("#tab-photo").click();
  setPhoto(file);
});

$("download").addEventListener("click", async () => {
  $("download").disabled = true;
  $("photo-status").textContent = "stylizing at full resolution…";
  try {
    const response = await fetch("/api/stylize", { method: "POST", body: formWith({ image: photo, size: "full" }) });
    if (!response.ok) { showMessage(await errorOf(response)); return; }
    const header = response.headers.get("Content-Disposition") || "";
    const name = decodeURIComponent((header.match(/filename\*=UTF-8''(.+)$/) || [, "stylized.png"])[1]);
    const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(await response.blob()), download: name });
    link.click();
    $("photo-status").textContent = `saved ${name} (stylized in ${response.headers.get("X-Fastnst-Ms")} ms)`;
  } finally {
    $("download").disabled = false;
  }
});

// ---- webcam mode -----------------------------------------------------------------------------------
// Frames go to the server as JPEG over one WebSocket. Three are kept in flight: the server stylizes two
// at once and the third waits there, so it never waits for the browser (scripts/bench/app.py: 2 in
// flight gave 0.8-0.9x the frames/s of 3). The frame rate counts stylized frames shown in the last two
// seconds; latency is from a frame's capture to its stylized copy arriving.
const IN_FLIGHT = 3;
const webcam = {
  socket: null, stream: null, inFlight: 0, shown: [], sent: [], canvas: document.createElement("canvas"),
  drawn: Promise.resolve(),  // frames are decoded off the main thread but drawn in order

  async start() {
    const [w, h] = $("webcam-size").value.split("x").map(Number);
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: w, height: h }, audio: false });
    } catch (err) {
      showMessage(`no camera: ${err.message}`);
      return;
    }
    clearMessage();
    this.inFlight = 0; this.sent = []; this.shown = [];
    Object.assign(this.canvas, { width: w, height: h });
    $("camera").srcObject = this.stream;
    await $("camera").play().catch(() => {});
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.socket = new WebSocket(`${scheme}://${location.host}/ws/webcam`);
    this.socket.binaryType = "arraybuffer";
    $("webcam-status").textContent = "loading the model (the first time, its INT8 version is made: ~15 s)…";
    this.socket.onopen = () => { this.sendSettings(); this.pump(); };
    // A stopped socket's last messages must not touch the count of the next one's frames.
    this.socket.onmessage = (event) => { if (event.target === this.socket) this.received(event.data); };
    this.socket.onclose = (event) => { if (event.target === this.socket) this.stop("the server closed the connection"); };
    $("webcam-start").textContent = "Stop the camera";
  },

  stop(why) {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null; this.inFlight = 0; this.shown = []; this.sent = [];
    for (const id of ["fps", "latency-ms", "server-ms"]) $(id).textContent = "–";
    $("webcam-start").textContent = "Start the camera";
    $("webcam-status").textContent = why || "";
  },

  sendSettings() {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(settings()));
  },

  pump() {
    while (this.socket && this.socket.readyState === WebSocket.OPEN && this.inFlight < IN_FLIGHT) {
      this.inFlight += 1;
      this.canvas.getContext("2d").drawImage($("camera"), 0, 0, this.canvas.width, this.canvas.height);
      const captured = performance.now();
      this.canvas.toBlob((blob) => {
        if (this.socket && blob) { this.sent.push(captured); this.socket.send(blob); } else if (this.socket) this.inFlight -= 1;
      }, "image/jpeg", 0.85);
    }
  },

  received(data) {
    if (typeof data === "string") {
      const reply = JSON.parse(data);
      if (reply.error) {
        showMessage(reply.error);
        if (reply.frame) { this.sent.shift(); this.inFlight -= 1; setTimeout(() => this.pump(), 200); }
      }
      else { clearMessage(); $("webcam-status").textContent = `stylizing on the server (${reply.engine})`; }
      return;
    }
    this.inFlight -= 1;
    const micros = new DataView(data).getUint32(0, true);
    const decoded = createImageBitmap(new Blob([data.slice(4)], { type: "image/jpeg" }));
    this.drawn = this.drawn.then(() => decoded).then((bitmap) => {
      const out = $("webcam-output");
      if (out.width !== bitmap.width || out.height !== bitmap.height) Object.assign(out, { width: bitmap.width, height: bitmap.height });
      out.getContext("2d").drawImage(bitmap, 0, 0);
      bitmap.close();
      out.dataset.frames = +(out.dataset.frames || 0) + 1;  // tests and benchmarks count on it
    }).catch((err) => showMessage(`a frame could not be shown (${err.message})`));
    const now = performance.now();
    this.shown.push(now);
    while (this.shown.length && this.shown[0] < now - 2000) this.shown.shift();
    if (this.shown.length > 1) {
      $("fps").textContent = ((this.shown.length - 1) * 1000 / (now - this.shown[0])).toFixed(1);
    }
    $("server-ms").textContent = (micros / 1000).toFixed(0);
    $("latency-ms").textContent = (now - this.sent.shift()).toFixed(0);
    this.pump();
  },
};

$("webcam-start").addEventListener("click", () => (webcam.stream ? webcam.stop() : webcam.start()));
$("webcam-size").addEventListener("change", () => { if (webcam.stream) { webcam.stop(); webcam.start(); } });

// ---- video mode ------------------------------------------------------------------------------------
$("video-input").addEventListener("change", async () => {
  const file = $("video-input").files[0];
  if (!file) return;
  $("video-download").hidden = true;
  $("video-result").hidden = true;
  $("video-status").textContent = `uploading ${file.name}…`;
  const response = await fetch("/api/videos", { method: "POST", body: formWith({ video: file, size: "full" }) });
  $("video-input").value = "";
  if (!response.ok) { showMessage(await errorOf(response)); $("video-status").textContent = ""; return; }
  clearMessage();
  const job = await response.json();
  $("video-progress").hidden = false;
  $("video-progress").value = 0;
  pollVideo(job.id, job.result, file.name);
});

async function pollVideo(id, result, name) {
  const response = await fetch(`/api/videos/${id}`);
  if (!response.ok) { showMessage(await errorOf(response)); return; }
  const job = await response.json();
  if (job.state === "error") {
    $("video-progress").hidden = true;
    $("video-status").textContent = "";
    showMessage(job.error);
    return;
  }
  if (job.state === "done") {
    $("video-progress").value = 1;
    $("video-status").textContent = `${name}: ${job.frames} frames stylized`;
    if (job.warning) showMessage(`${name}: ${job.warning}`);
    $("video-result").src = result;
    $("video-result").hidden = false;
    Object.assign($("video-download"), { href: result, hidden: false });
    return;
  }
  $("video-progress").value = job.total ? job.frames / job.total : 0;
  $("video-status").textContent = job.state === "queued" ? "waiting for the clip before it…"
    : `frame ${job.frames}${job.total ? ` of ${job.total}` : ""}`;
  setTimeout(() => pollVideo(id, result, name), 400);
}

// ---- tabs ------------------------------------------------------------------------------------------
for (const tab of document.querySelectorAll("nav button")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav button")) other.setAttribute("aria-selected", other === tab);
    for (const section of document.querySelectorAll(".mode")) section.hidden = section.id !== `mode-${tab.dataset.mode}`;
    if (tab.dataset.mode !== "webcam" && webcam.stream) webcam.stop();
  });
}

loadModels();
