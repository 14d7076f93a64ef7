// The drawing page. It only talks to the public API (/v1/predict, /v1/read, /v1/corrections, /v1/model),
// so what it shows is what any API client gets. It sends the drawing as the canvas gives it (dark ink on a
// transparent background): making it look like an MNIST digit is the server's one pipeline, not the page's.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const overlay = $("overlay");
  const ctx = pad.getContext("2d");
  const octx = overlay.getContext("2d");
  const wrap = $("canvas-wrap");
  const answer = $("answer");
  const digitEl = $("digit");
  const statusEl = $("status");
  const seen = $("seen");
  const seenEmpty = $("seen-empty");
  const bars = $("bars");
  const numberRow = $("number-text-row");
  const numberText = $("number-text");
  const numberBest = $("number-best");
  const photoFigure = $("photo-figure");
  const photo = $("photo");
  const correctForm = $("correct");
  const labelSelect = $("label");
  const recordButton = $("record");
  const correctStatus = $("correct-status");

  const PEN = 18; // stroke width on the 280-pixel pad: about a pen's on paper
  const DEBOUNCE_MS = 150; // live prediction while drawing, at most this often
  const strokes = []; // each stroke: a list of [x, y] points in the pad's own pixels
  let drawing = null; // the stroke being drawn, with its pointer id
  let mode = "digit";
  let input = null; // what was last sent: {kind: "drawing", dataUrl} or {kind: "photo", blob, name}
  let lastAnswer = null; // the last /v1/predict answer, for a correction
  let correctionsOn = false;
  let timer = null;
  let sequence = 0; // answers that come back out of order are dropped
  let inFlight = false;
  let pending = false;

  // -- bars ------------------------------------------------------------------------------------------------
  const barRows = [];
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="label">${d}</span><span class="bar"><span></span></span><span class="value">&ndash;</span>`;
    li.setAttribute("aria-label", `${d}: no answer yet`);
    bars.appendChild(li);
    barRows.push(li);
  }

  function showBars(probabilities, top) {
    barRows.forEach((li, d) => {
      const p = probabilities ? probabilities[d] : 0;
      li.querySelector(".bar > span").style.width = `${(p * 100).toFixed(1)}%`;
      li.querySelector(".value").textContent = probabilities ? `${(p * 100).toFixed(1)}%` : "–";
      li.classList.toggle("top", probabilities !== null && d === top);
      li.setAttribute("aria-label", probabilities ? `${d}: ${(p * 100).toFixed(1)} percent` : `${d}: no answer`);
    });
  }

  function showSeen(image28) {
    if (image28) {
      seen.src = `data:image/png;base64,${image28}`;
      seen.hidden = false;
      seenEmpty.hidden = true;
    } else {
      seen.hidden = true;
      seenEmpty.hidden = false;
    }
  }

  function setAnswer(state, digit, status) {
    answer.className = `answer ${state}`;
    digitEl.textContent = digit;
    statusEl.textContent = status;
  }

  // -- drawing ---------------------------------------------------------------------------------------------
  function redraw() {
    ctx.clearRect(0, 0, pad.width, pad.height); // transparent, as a web canvas is: the server copes
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = PEN;
    ctx.strokeStyle = "#111";
    ctx.fillStyle = "#111";
    for (const stroke of strokes) {
      if (stroke.length === 1) {
        ctx.beginPath();
        ctx.arc(stroke[0][0], stroke[0][1], PEN / 2, 0, 2 * Math.PI);
        ctx.fill();
        continue;
      }
      ctx.beginPath();
      ctx.moveTo(stroke[0][0], stroke[0][1]);
      for (const [x, y] of stroke.slice(1)) ctx.lineTo(x, y);
      ctx.stroke();
    }
  }

  function point(event) {
    const rect = pad.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * pad.width) / rect.width,
      ((event.clientY - rect.top) * pad.height) / rect.height,
    ];
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    drawing = { id: event.pointerId, points: [point(event)] };
    strokes.push(drawing.points);
    clearOverlay();
    redraw();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing || event.pointerId !== drawing.id) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) drawing.points.push(point(e));
    redraw();
    schedule(DEBOUNCE_MS);
  });
  const finish = (event) => {
    if (!drawing || event.pointerId !== drawing.id) return;
    drawing = null;
    schedule(0);
  };
  pad.addEventListener("pointerup", finish);
  pad.addEventListener("pointercancel", finish);

  function clearPad() {
    strokes.length = 0;
    redraw();
    clearOverlay();
    input = null;
    lastAnswer = null;
    sequence++; // an answer on its way is for a drawing that is gone
    showEmpty();
  }

  function undo() {
    if (!strokes.length) return;
    strokes.pop();
    redraw();
    clearOverlay();
    if (strokes.length) schedule(0);
    else clearPad();
  }

  $("clear").addEventListener("click", clearPad);
  $("undo").addEventListener("click", undo);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    } else if (event.key === "Escape") {
      clearPad();
    }
  });

  function showEmpty() {
    photoFigure.hidden = true;
    numberRow.hidden = true;
    showBars(null, -1);
    showSeen(null);
    setAnswer("empty", "–", mode === "digit" ? "Draw a digit on the pad." : "Write a number on the pad.");
    updateCorrection();
  }

  // -- modes -----------------------------------------------------------------------------------------------
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => {
      mode = radio.value;
      const wide = mode === "number";
      pad.width = wide ? 560 : 280;
      overlay.width = pad.width;
      wrap.classList.toggle("wide", wide);
      $("digit-details").hidden = wide;
      clearPad();
    });
  }

  // -- asking the server -----------------------------------------------------------------------------------
  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(send, delay);
  }

  async function send() {
    if (!strokes.length) return;
    if (inFlight) {
      pending = true; // one request at a time; the newest drawing goes next
      return;
    }
    input = { kind: "drawing", dataUrl: pad.toDataURL("image/png") };
    photoFigure.hidden = true;
    await ask(input);
  }

  async function ask(what) {
    const mine = ++sequence;
    inFlight = true;
    try {
      const route = mode === "digit" ? "/v1/predict" : "/v1/read";
      let response;
      if (what.kind === "drawing") {
        response = await fetch(route, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ image: what.dataUrl, name: "drawing.png" }),
        });
      } else {
        const form = new FormData();
        form.append("image", what.blob, what.name);
        response = await fetch(route, { method: "POST", body: form });
      }
      const body = await response.json();
      if (mine !== sequence) return; // a newer drawing was sent meanwhile
      if (!response.ok) {
        showError(body);
      } else if (mode === "digit") {
        showPrediction(body);
      } else {
        showReading(body, what);
      }
    } catch (error) {
      if (mine === sequence) setAnswer("error", "!", `The server did not answer (${error.message}).`);
    } finally {
      inFlight = false;
      if (pending) {
        pending = false;
        schedule(0);
      }
    }
  }

  function showError(body) {
    const message = body && body.error ? body.error.message : "the server refused the picture";
    lastAnswer = null;
    setAnswer("error", "!", message);
    showBars(null, -1);
    showSeen(null);
    updateCorrection();
  }

  function showPrediction(body) {
    lastAnswer = body;
    showSeen(body.image28);
    if (body.digit === null) {
      setAnswer("no-digit", "–", "No digit found: draw one larger or darker.");
      showBars(null, -1);
    } else {
      const percent = (body.confidence * 100).toFixed(1);
      if (body.uncertain) {
        setAnswer("uncertain", `${body.digit}?`, `Uncertain (${body.reason}): ${body.digit} at ${percent}%.`);
      } else {
        setAnswer("sure", String(body.digit), `A ${body.digit}, ${percent}% sure.`);
      }
      showBars(body.probabilities, body.digit);
    }
    updateCorrection();
  }

  function showReading(body, what) {
    lastAnswer = null;
    numberRow.hidden = false;
    const found = body.digits.filter((d) => d.digit !== null || d.symbol !== null);
    numberText.textContent = body.text.replace(/\n/g, " / ");
    numberBest.textContent = body.text.includes("?") ? `(best guess: ${body.best.replace(/\n/g, " / ")})` : "";
    if (!found.length) {
      setAnswer("no-digit", "–", "No digits found.");
    } else if (body.text.includes("?")) {
      const doubtful = body.digits.filter((d) => d.uncertain).length;
      setAnswer("uncertain", "?", `${found.length} found, ${doubtful} uncertain (marked ?).`);
    } else {
      setAnswer("sure", "✓", `${found.length} found.`);
    }
    if (what.kind === "drawing") {
      drawBoxes(octx, body.digits, 1);
    } else {
      drawPhoto(what, body.digits);
    }
    updateCorrection();
  }

  // -- number mode: a box and the digit over each digit read -------------------------------------------------
  function clearOverlay() {
    octx.clearRect(0, 0, overlay.width, overlay.height);
  }

  function drawBoxes(context, digits, scale) {
    if (context === octx) clearOverlay();
    context.lineWidth = 2;
    context.font = `bold ${Math.max(14, Math.round(18 * Math.max(1, scale * 1.2)))}px system-ui, sans-serif`;
    context.textBaseline = "bottom";
    for (const d of digits) {
      if (!d.box) continue;
      const [x, y, w, h] = d.box.map((v) => v * scale);
      const text = d.symbol !== null ? d.symbol : d.uncertain ? "?" : String(d.digit);
      const colour = d.uncertain ? "#bf8700" : "#1a7f37";
      context.strokeStyle = colour;
      context.strokeRect(x - 2, y - 2, w + 4, h + 4);
      const size = context.measureText(text);
      const top = Math.max(y - 4, 20);
      context.fillStyle = "rgba(255,255,255,0.85)";
      context.fillRect(x - 2, top - 20, size.width + 8, 20);
      context.fillStyle = colour;
      context.fillText(text, x + 2, top);
    }
  }

  function drawPhoto(what, digits) {
    const image = what.image;
    const scale = Math.min(1, 560 / image.naturalWidth);
    photo.width = Math.round(image.naturalWidth * scale);
    photo.height = Math.round(image.naturalHeight * scale);
    const context = photo.getContext("2d");
    context.drawImage(image, 0, 0, photo.width, photo.height);
    if (digits) drawBoxes(context, digits, scale);
    photoFigure.hidden = false;
  }

  // -- photos ----------------------------------------------------------------------------------------------
  const upload = $("upload");
  upload.addEventListener("change", () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    strokes.length = 0;
    redraw();
    clearOverlay();
    const url = URL.createObjectURL(file);
    const image = new Image();
    image.onload = () => {
      input = { kind: "photo", blob: file, name: file.name, image };
      drawPhoto(input, null);
      $("photo-caption").textContent = `the uploaded photo: ${file.name}`;
      ask(input);
    };
    image.onerror = () => {
      // Not a picture the browser can show; the server says what it makes of it.
      input = { kind: "photo", blob: file, name: file.name, image: null };
      photoFigure.hidden = true;
      ask(input);
    };
    image.src = url;
    upload.value = ""; // the same file again is a new upload
  });
  upload.addEventListener("focus", () => document.querySelector(".upload").classList.add("focused"));
  upload.addEventListener("blur", () => document.querySelector(".upload").classList.remove("focused"));

  // -- corrections -----------------------------------------------------------------------------------------
  function updateCorrection() {
    if (!correctionsOn) return;
    const usable = mode === "digit" && lastAnswer !== null && lastAnswer.digit !== null && input !== null;
    labelSelect.disabled = !usable;
    recordButton.disabled = !usable;
    if (usable) correctStatus.textContent = "";
    else if (mode === "number") correctStatus.textContent = "Corrections are made on one digit at a time.";
  }

  correctForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!correctionsOn || !input || !lastAnswer) return;
    const label = labelSelect.value;
    let response;
    if (input.kind === "drawing") {
      response = await fetch("/v1/corrections", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image: input.dataUrl, label: Number(label), source: "page" }),
      });
    } else {
      const form = new FormData();
      form.append("image", input.blob, input.name);
      form.append("label", label);
      form.append("source", "page");
      response = await fetch("/v1/corrections", { method: "POST", body: form });
    }
    const body = await response.json();
    if (response.ok) {
      correctStatus.className = "note ok";
      const was = body.predicted === null ? "no digit" : `a ${body.predicted}`;
      correctStatus.textContent = `Recorded: it is a ${body.label} (the model said ${was}). Thank you.`;
    } else {
      correctStatus.className = "note bad";
      correctStatus.textContent = body.error ? body.error.message : "The correction was not recorded.";
    }
  });

  // -- start -----------------------------------------------------------------------------------------------
  async function start() {
    showEmpty();
    try {
      const status = await (await fetch("/v1/corrections")).json();
      correctionsOn = status.enabled;
    } catch (error) {
      correctionsOn = false;
    }
    if (!correctionsOn) {
      labelSelect.disabled = true;
      recordButton.disabled = true;
      correctStatus.textContent =
        "Corrections are off: start the server with digits serve --store DIR to keep them.";
    } else {
      updateCorrection();
    }
    try {
      const model = await (await fetch("/v1/model")).json();
      const accuracy = model.test_accuracy ? `, ${(model.test_accuracy * 100).toFixed(2)}% on MNIST's test digits` : "";
      $("model").textContent = `Model: ${model.name} (${model.file}${accuracy}); digits ${model.digits_version}.`;
    } catch (error) {
      $("model").textContent = "The model's description could not be loaded.";
    }
    document.body.dataset.ready = "true";
  }
  start();
})();
