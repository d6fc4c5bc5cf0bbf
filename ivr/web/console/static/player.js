// The recording player of the call page: a waveform to click, play/pause, 1× / 1.5× / 2×, the
// keyboard, and (when the transcript has times) a jump to the line being said.
//
// <div class="player" data-src data-peaks-url data-transcript> wraps the browser's <audio controls>
// (what is left without JavaScript). The waveform comes from the server's peaks JSON
// (recording_peaks.py: cheap for long calls); when it has none (not PCM WAV) the file is decoded
// here with WebAudio's decodeAudioData. Everything is same-origin: the page's CSP allows nothing else.
//
// Keyboard on the waveform (role="slider"): ←/→ 5 s, Home/End, Space or Enter play/pause.
// Transcript hook: lines rendered with data-start (seconds) seek on click and are highlighted while
// they play; words with data-start/data-end (the transcription worker's) are highlighted one by one
// (class "now"; the root's data-word names the word lit). A page without them simply has none.
"use strict";
(() => {
  const SPEEDS = [1, 1.5, 2];
  const STEP = 5;

  function el(tag, props, ...children) {
    const node = Object.assign(document.createElement(tag), props || {});
    node.append(...children);
    return node;
  }

  async function serverPeaks(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return null;
    return response.json();
  }

  async function decodedPeaks(url, buckets) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return null;
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    const context = new Context();
    try {
      const audio = await context.decodeAudioData(await response.arrayBuffer());
      const data = audio.getChannelData(0);
      const size = Math.max(1, Math.floor(data.length / buckets));
      const peaks = [];
      for (let i = 0; i < data.length; i += size) {
        let peak = 0;
        for (let j = i; j < Math.min(i + size, data.length); j++) peak = Math.max(peak, Math.abs(data[j]));
        peaks.push(peak);
      }
      const loudest = Math.max(...peaks) || 1;
      return { duration: audio.duration, peaks: peaks.map((p) => p / loudest) };
    } finally {
      context.close();
    }
  }

  function setup(root) {
    const audio = root.querySelector("audio");
    audio.controls = false;
    audio.preload = "auto";
    const play = el("button", { type: "button", className: "play" }, "▶ Слушать");
    const clock = el("span", { className: "clock" }, "0:00 / —");
    const speeds = SPEEDS.map((rate) => el("button", {
      type: "button", className: "speed secondary", value: String(rate),
      title: "Скорость " + String(rate).replace(".", ",") + "×",
    }, String(rate).replace(".", ",") + "×"));
    const canvas = el("canvas", { className: "wave", tabIndex: 0 });
    canvas.setAttribute("role", "slider");
    canvas.setAttribute("aria-label", "Положение в записи");
    canvas.setAttribute("aria-valuemin", "0");
    root.append(el("div", { className: "controls" }, play, ...speeds, clock), canvas);

    let peaks = [];
    let duration = 0;
    const length = () => (Number.isFinite(audio.duration) && audio.duration > 0 ? audio.duration : duration);

    function draw() {
      const ratio = window.devicePixelRatio || 1;
      const width = canvas.clientWidth, height = canvas.clientHeight;
      if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
      if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
      const g = canvas.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, width, height);
      const played = length() ? audio.currentTime / length() : 0;
      const bar = width / Math.max(1, peaks.length);
      peaks.forEach((peak, i) => {
        const h = Math.max(1, peak * (height - 6));
        g.fillStyle = (i + 0.5) / peaks.length <= played ? "#0f62fe" : "#a4bcfd";
        g.fillRect(i * bar, (height - h) / 2, Math.max(1, bar - 0.5), h);
      });
      g.fillStyle = "#1d2330";
      g.fillRect(Math.min(width - 2, played * width), 0, 2, height);
      canvas.dataset.drawn = String(peaks.length);
    }

    function update() {
      const total = length();
      ivr.text(clock, ivr.fmt.duration(audio.currentTime) + " / " + (total ? ivr.fmt.duration(total) : "—"));
      canvas.setAttribute("aria-valuemax", String(Math.round(total)));
      canvas.setAttribute("aria-valuenow", String(Math.round(audio.currentTime)));
      canvas.setAttribute("aria-valuetext", ivr.fmt.duration(audio.currentTime));
      ivr.text(play, audio.paused ? "▶ Слушать" : "❚❚ Пауза");
      highlight();
      draw();
    }

    function seek(seconds) {
      const total = length();
      if (!total) return;
      audio.currentTime = Math.max(0, Math.min(total, seconds));
      update();
    }

    function setSpeed(rate) {
      audio.playbackRate = rate;
      audio.defaultPlaybackRate = rate;
      speeds.forEach((b) => b.setAttribute("aria-pressed", String(Number(b.value) === rate)));
    }

    // Transcript lines with a start time: click to hear, highlighted while said. Words with their own
    // times (the transcription worker's) light up one by one; a click on a word plays from it.
    const lines = root.dataset.transcript
      ? [...document.querySelectorAll(".transcript-line[data-start]")].map((node) => ({ node, start: Number(node.dataset.start) }))
      : [];
    lines.sort((a, b) => a.start - b.start);
    const words = root.dataset.transcript
      ? [...document.querySelectorAll(".transcript .word[data-start]")].map((node) => ({
        node, start: Number(node.dataset.start), end: Number(node.dataset.end),
      }))
      : [];
    words.sort((a, b) => a.start - b.start);
    let currentWord = null;
    function highlight() {
      const t = audio.currentTime;
      let current = null;
      for (const line of lines) if (line.start <= t) current = line;
      for (const line of lines) line.node.classList.toggle("now", line === current);
      // The word being said: started and not yet over (a pause between words lights none).
      let word = null;
      for (const w of words) {
        if (w.start > t) break;
        if (t < w.end) word = w;
      }
      if (word !== currentWord) {
        if (currentWord) currentWord.node.classList.remove("now");
        if (word) word.node.classList.add("now");
        currentWord = word;
        root.dataset.word = word ? word.node.textContent : "";
      }
    }
    for (const line of lines) {
      line.node.tabIndex = 0;
      line.node.addEventListener("click", () => { seek(line.start); audio.play(); });
      line.node.addEventListener("keydown", (e) => { if (e.key === "Enter") { seek(line.start); audio.play(); } });
    }
    for (const w of words) {
      w.node.addEventListener("click", (e) => { e.stopPropagation(); seek(w.start); audio.play(); });
    }
    // timeupdate comes 4 times a second: too coarse for words, so a frame loop runs while playing.
    function follow() {
      highlight();
      if (!audio.paused && !audio.ended) window.requestAnimationFrame(follow);
    }
    if (words.length) audio.addEventListener("play", () => window.requestAnimationFrame(follow));

    play.addEventListener("click", () => (audio.paused ? audio.play() : audio.pause()));
    speeds.forEach((b) => b.addEventListener("click", () => setSpeed(Number(b.value))));
    canvas.addEventListener("click", (e) => {
      const box = canvas.getBoundingClientRect();
      seek(((e.clientX - box.left) / box.width) * length());
    });
    canvas.addEventListener("keydown", (e) => {
      const keys = {
        ArrowLeft: () => seek(audio.currentTime - STEP), ArrowRight: () => seek(audio.currentTime + STEP),
        Home: () => seek(0), End: () => seek(length()),
        " ": () => play.click(), Enter: () => play.click(),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
    for (const event of ["timeupdate", "play", "pause", "loadedmetadata", "seeked", "ended"]) {
      audio.addEventListener(event, update);
    }
    window.addEventListener("resize", draw);
    setSpeed(1);
    update();

    (async () => {
      const found = (await serverPeaks(root.dataset.peaksUrl).catch(() => null))
        || (await decodedPeaks(root.dataset.src, 800).catch(() => null));
      if (found) {
        peaks = found.peaks;
        duration = found.duration;
        root.dataset.waveform = "ready";
      } else {
        root.dataset.waveform = "none";
      }
      update();
    })();
  }

  document.querySelectorAll(".player[data-src]").forEach(setup);
})();
