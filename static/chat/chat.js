// The chat page: one WebSocket to /ws/chat/ (protocol in playground/chat/consumers.py).
// Model text is only ever inserted with textContent while it streams; the finished answer is swapped
// for the server's rendering (Markdown with raw HTML escaped) fetched through htmx.
(function () {
  "use strict";
  const root = document.getElementById("chat");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const composer = $("composer");
  const content = $("id_content");
  const sendButton = $("send");
  const stopButton = $("stop");
  const connection = $("connection");
  const settingsForm = $("chat-settings");
  const LABELS = {
    content: "Message", model: "Model", system: "System prompt", temperature: "Temperature", top_k: "Top-k",
    top_p: "Top-p", min_p: "Min-p", repetition_penalty: "Repetition penalty", seed: "Seed",
    max_new_tokens: "Max new tokens", stop_sequences: "Stop sequences", best_of: "Best of N",
    num_beams: "Beams",
    speculative: "Speculative decoding",
    draft_model: "Draft model",
    speculative_tokens: "Proposed tokens",
    response_format: "Output",
    json_schema: "JSON schema",
  };
  const NUMBER_FIELDS = [
    "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "max_new_tokens", "best_of", "num_beams",
    "speculative_tokens",
  ];

  const state = {
    socket: null,
    conversation: root.dataset.conversation ? Number(root.dataset.conversation) : null,
    streaming: false, // from Send until "done" (or an error before "started")
    messageId: null,
    bubble: null,
    text: null,
    retries: 0,
    sessionEnded: false,
    used: Number($("context-bar").dataset.used || 0),
    context: null, // the model's context length: the catalog's figure until a "started" frame says

    generated: 0,
  };

  // --- the socket -----------------------------------------------------------------------------
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/chat/");
    state.socket = socket;
    setConnection("Connecting…");
    socket.addEventListener("open", () => {
      state.retries = 0;
      setConnection("Connected");
      updateButtons();
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      const handler = HANDLERS[frame.type];
      if (handler) handler(frame);
    });
    socket.addEventListener("close", (event) => {
      state.socket = null;
      const interrupted = state.streaming ? state.messageId : null;
      if (state.streaming) finishStreaming();
      if (event.code === 4401) {
        state.sessionEnded = true;
        $("session-ended").hidden = false;
        setConnection("Logged out");
        updateButtons();
        return;
      }
      // The server saved the partial answer as "stopped": show what it kept.
      if (interrupted) setTimeout(() => refreshMessage(interrupted), 1500);
      const delay = Math.min(30000, 1000 * 2 ** state.retries);
      state.retries += 1;
      setConnection("Disconnected: reconnecting in " + Math.round(delay / 1000) + " s…");
      updateButtons();
      setTimeout(connect, delay);
    });
  }

  function sendFrame(frame) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      showError("Not connected to the server yet: wait a moment and try again.");
      return false;
    }
    state.socket.send(JSON.stringify(frame));
    return true;
  }

  // --- frames in ------------------------------------------------------------------------------
  const HANDLERS = {
    loading(frame) {
      // The model is not in memory yet: its first answer waits for it to load.
      const note = el("li", "msg status-note hint");
      note.setAttribute("role", "status");
      note.dataset.testid = "loading";
      note.textContent = "Loading " + frame.model + " (its first answer waits a few seconds for it)…";
      messages.append(note);
      scrollDown();
    },
    started(frame) {
      messages.querySelectorAll(".status-note").forEach((note) => note.remove());
      state.messageId = frame.message;
      state.pending = null;
      placeNewVersion(frame);
      if (state.conversation !== frame.conversation) {
        state.conversation = frame.conversation;
        root.dataset.conversation = String(frame.conversation);
        history.replaceState(null, "", root.dataset.indexUrl + frame.conversation + "/");
      }
      refreshSidebar();
      state.bubble = el("li", "msg assistant streaming");
      state.bubble.id = "message-" + frame.message;
      const who = el("div", "who");
      who.textContent = "Assistant ";
      const badge = el("span", "badge");
      badge.textContent = "streaming";
      who.append(badge);
      state.text = el("div", "body stream");
      state.text.dataset.testid = "streaming-text";
      state.text.textContent = frame.prefix || ""; // continue, branch, replay: the answer's forced start
      state.prefixTokens = frame.prefix_tokens || 0;
      state.bubble.append(who, state.text);
      messages.append(state.bubble);
      state.context = frame.context_length;
      state.used = frame.prompt_tokens;
      state.generated = 0;
      state.maxNew = frame.max_new_tokens;
      updateContext();
      scrollDown();
    },
    prefill(frame) {
      // A long prompt is read a chunk a step before the first token: show how far.
      const note = waitNote();
      if (!note) return;
      const percent = Math.floor((100 * frame.done) / frame.total);
      note.textContent = "Reading the prompt: " + frame.done.toLocaleString("en") + " of " +
        frame.total.toLocaleString("en") + " tokens (" + percent + " %)…";
    },
    queued(frame) {
      // The engine is full: this answer waits in line and starts by itself when room frees up.
      const note = waitNote();
      if (!note) return;
      const running = frame.running + (frame.running === 1 ? " answer" : " answers") + " running";
      note.textContent = frame.ahead > 0
        ? "Waiting, " + frame.ahead + " ahead (" + running + ")…"
        : "Waiting for room (" + running + ")…";
    },
    token(frame) {
      if (!state.text) return;
      const note = state.bubble && state.bubble.querySelector(".queued");
      if (note) note.remove();
      state.text.textContent += frame.text;
      state.generated = frame.index + 1 - (state.prefixTokens || 0);
      updateContext();
      scrollDown();
    },
    stats(frame) {
      // a remote model's prompt is counted by its server, and known only now
      if (frame.prompt_tokens) state.used = frame.prompt_tokens;
      state.generated = frame.generated_tokens;
      updateContext();
    },
    done(frame) {
      if (state.text) state.text.textContent += frame.tail;
      state.used += state.generated;
      state.generated = 0;
      finishStreaming();
      refreshMessages(frame.error); // the whole branch: version switchers and buttons change too
      refreshSidebar();
      updateContext();
    },
    error(frame) {
      if (state.streaming && !state.messageId) {
        // Refused before it started: nothing was saved, so take the message back into the composer.
        if (state.pending) {
          state.pending.remove();
          if (!content.value) content.value = state.pendingText;
        }
        finishStreaming();
      }
      const fields = frame.fields || {};
      const named = Object.entries(fields).map(([name, errors]) => (LABELS[name] || name) + ": " + errors.join(" "));
      showError(named.length ? named.join(" ") : frame.error, fields);
    },
    pong() {},
  };

  // --- actions --------------------------------------------------------------------------------
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  content.addEventListener("input", () => {
    state.placeholdersWarned = false;
    const slot = document.querySelector('[data-error-for="content"]');
    if (slot && !slot.dataset.length && content.value.trim()) slot.textContent = ""; // fixed: the error goes
    lengthsChanged();
  });
  settingsForm.elements.system.addEventListener("input", lengthsChanged);
  content.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  stopButton.addEventListener("click", () => {
    if (state.streaming) sendFrame({ type: "stop" });
  });
  settingsForm.addEventListener("input", updateContext);
  settingsForm.elements.model.addEventListener("change", contextFromCatalog);
  // The schema box shows only while "JSON schema" is the chosen output (it keeps its text meanwhile).
  function showSchema() {
    settingsForm.querySelector(".json-schema").hidden = settingsForm.elements.response_format.value !== "json_schema";
  }
  settingsForm.elements.response_format.addEventListener("change", showSchema);
  // Delegated: the saved presets' buttons are re-rendered by htmx after a save or delete.
  settingsForm.addEventListener("click", (event) => {
    const button = event.target.closest("button.preset");
    if (!button) return;
    const values = JSON.parse(button.dataset.values);
    for (const [name, value] of Object.entries(values)) {
      if (settingsForm.elements[name]) settingsForm.elements[name].value = value;
    }
    document.querySelectorAll("button.preset").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
    showSchema();
    updateContext();
  });

  function send() {
    if (state.streaming) return;
    const text = content.value;
    clearErrors();
    if (!text.trim()) {
      showError("Type a message.", { content: ["Type a message."] });
      return;
    }
    if (tooLong(content) || tooLong(settingsForm.elements.system)) return; // said beside the field
    // A prompt from the library with {placeholders} left: say so once; a second Send sends it as it is.
    const left = (content.dataset.placeholders || "").split(" ").filter((n) => n && text.includes("{" + n + "}"));
    if (left.length && !state.placeholdersWarned) {
      state.placeholdersWarned = true;
      const names = left.map((n) => "{" + n + "}").join(", ");
      showError("", { content: ["Replace " + names + " first, or press Send again to send the message as it is."] });
      return;
    }
    const frame = Object.assign(panelFields(), { type: "send", conversation: state.conversation, content: text });
    if (!sendFrame(frame)) return;
    const empty = $("empty-note");
    if (empty) empty.remove();
    const bubble = el("li", "msg user");
    const who = el("div", "who");
    who.textContent = "You";
    const body = el("div", "body plain");
    body.textContent = text;
    bubble.append(who, body);
    messages.append(bubble);
    state.pending = bubble;
    state.pendingText = text;
    content.value = "";
    state.streaming = true;
    state.messageId = null;
    updateButtons();
    scrollDown();
  }

  // The model, system prompt and sampler settings of the panel, as a "send" frame carries them.
  function panelFields() {
    const f = settingsForm.elements;
    const settings = {};
    for (const name of NUMBER_FIELDS) {
      if (f[name]) settings[name] = f[name].value; // the server validates and says what is wrong
    }
    settings.seed = f.seed.value.trim() === "" ? null : f.seed.value;
    settings.stop_sequences = f.stop_sequences.value.split("\n").filter((s) => s !== "");
    settings.speculative = f.speculative.value;
    settings.draft_model = f.draft_model.value;
    settings.response_format = f.response_format.value;
    settings.json_schema = f.json_schema.value;
    return { model: f.model.value, system: f.system.value, settings: settings };
  }

  // --- versions: regenerate, continue, edit, branch from a token, replay, copy ---------------------
  // A "send" frame with an "action" (protocol in consumers.py). The panel's settings fill what the
  // frame leaves out; the new answer streams in place of the branch it replaces.
  function startAction(frame) {
    if (state.streaming) {
      showError("An answer is still streaming: stop it or wait for it first.");
      return false;
    }
    clearErrors();
    const full = Object.assign(panelFields(), { type: "send", conversation: state.conversation }, frame);
    if (!sendFrame(full)) return false;
    state.editText = full.action === "edit" ? full.content : null;
    state.pending = null;
    state.streaming = true;
    state.messageId = null;
    updateButtons();
    return true;
  }

  // On "started" of a new version: drop the old branch below where the new version goes.
  function placeNewVersion(frame) {
    const action = frame.action || "new";
    if (action === "new") return;
    let left = 0; // the messages after the old version: they stay with it, and the page says how to get back
    if (action === "edit") {
      left = removeFrom($("message-" + frame.source)) - 1;
      const bubble = el("li", "msg user");
      bubble.id = "message-" + frame.parent;
      const who = el("div", "who");
      who.textContent = "You";
      const body = el("div", "body plain");
      body.textContent = state.editText || "";
      bubble.append(who, body);
      messages.append(bubble);
    } else {
      const parent = $("message-" + frame.parent);
      if (parent) left = removeFrom(parent.nextElementSibling) - 1;
    }
    if (left > 0) {
      const note = el("li", "msg status-note hint version-left");
      note.dataset.testid = "version-left";
      note.textContent = "The " + left + (left === 1 ? " message" : " messages") + " after the earlier " +
        "version stay with it: once this answer is written, switch versions with ‹ › to get back to them.";
      messages.append(note);
    }
  }

  // Removes `node` and everything after it; returns how many messages went (status notes do not count).
  function removeFrom(node) {
    let removed = 0;
    while (node) {
      const next = node.nextElementSibling;
      if (!node.classList.contains("status-note")) removed += 1;
      node.remove();
      node = next;
    }
    return removed;
  }

  messages.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const bar = button.closest(".msg-actions");
    const id = Number(bar.dataset.message);
    const action = button.dataset.action;
    if (action === "copy") copyText(bar.dataset.content, button);
    else if (action === "edit") openEditor(button.closest("li.msg"), bar);
    else startAction({ action: action, message: id });
  });

  function copyText(text, button) {
    const done = () => {
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => copyByTextarea(text) && done());
    } else if (copyByTextarea(text)) done();
  }

  function copyByTextarea(text) {
    // The Clipboard API needs a secure context (https or localhost); a plain-http site falls back to this.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    area.remove();
    return ok;
  }

  function openEditor(bubble, bar) {
    if (bubble.querySelector("form.editor")) return;
    const body = bubble.querySelector(".body");
    const form = el("form", "editor");
    const area = el("textarea", "");
    area.name = "content";
    area.rows = 3;
    // no maxlength: a browser would cut a long paste without a word; the server refuses it with the limit
    area.value = bar.dataset.content;
    area.setAttribute("aria-label", "Edit your message");
    const error = el("small", "field-error");
    const save = el("button", "");
    save.type = "submit";
    save.textContent = "Save & rerun";
    const cancel = el("button", "secondary");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    const buttons = el("div", "editor-actions");
    buttons.append(save, cancel);
    form.append(area, error, buttons);
    body.hidden = true;
    bar.hidden = true;
    bubble.append(form);
    area.focus();
    cancel.addEventListener("click", () => {
      form.remove();
      body.hidden = false;
      bar.hidden = false;
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!area.value.trim()) {
        error.textContent = "Type a message.";
        return;
      }
      error.textContent = "";
      startAction({ action: "edit", message: Number(bar.dataset.message), content: area.value });
    });
  }

  // For the token inspector (inspector.js): branch from token `index` of answer `messageId` with `tokenId`.
  window.chatPage = {
    send: startAction,
    branchFrom(messageId, index, tokenId) {
      return startAction({ action: "branch", message: Number(messageId), at: Number(index), token: Number(tokenId) });
    },
  };

  // The line under a streaming answer that says what it waits for (room in the engine, its prompt).
  function waitNote() {
    if (!state.bubble) return null;
    let note = state.bubble.querySelector(".queued");
    if (!note) {
      note = el("p", "hint queued");
      note.dataset.testid = "queued";
      note.setAttribute("role", "status");
      state.bubble.append(note);
    }
    return note;
  }

  function finishStreaming() {
    messages.querySelectorAll(".status-note").forEach((note) => note.remove());
    state.streaming = false;
    if (state.bubble) state.bubble.classList.remove("streaming");
    state.bubble = null;
    state.text = null;
    state.messageId = null;
    updateButtons();
  }

  // --- rendering ------------------------------------------------------------------------------
  function refreshMessage(id) {
    const target = $("message-" + id);
    if (!target || !window.htmx) return;
    const url = root.dataset.messageUrl.replace("/0/", "/" + id + "/");
    htmx.ajax("GET", url, { target: target, swap: "outerHTML" }).then(scrollDown);
  }

  function refreshMessages(error) {
    if (!state.conversation || !window.htmx) return;
    const url = root.dataset.indexUrl + state.conversation + "/messages/";
    htmx.ajax("GET", url, { target: "#messages", swap: "innerHTML" }).then(() => {
      if (error) showError(error);
      scrollDown();
    });
  }

  function refreshSidebar() {
    if (!window.htmx) return;
    const search = document.querySelector('.chat-sidebar input[name="q"]');
    const q = search ? search.value : "";
    htmx.ajax("GET", root.dataset.searchUrl + "?q=" + encodeURIComponent(q), {
      target: "#conversation-list",
      swap: "innerHTML",
    });
  }

  // An error goes beside the field it names; only one that names no field on the page shows in the
  // conversation, and any earlier one goes first (errors never pile up).
  function showError(text, fields) {
    clearErrors();
    let placed = 0;
    const entries = Object.entries(fields || {});
    for (const [name, errors] of entries) {
      const slot = document.querySelector('[data-error-for="' + name + '"]');
      if (slot) {
        slot.textContent = errors.join(" ");
        placed += 1;
      }
    }
    if (text && placed < Math.max(entries.length, 1)) {
      const note = el("li", "msg error-note");
      note.setAttribute("role", "alert");
      note.textContent = text;
      messages.append(note);
      scrollDown();
    }
  }

  function clearErrors() {
    document.querySelectorAll("[data-error-for]").forEach((slot) => (slot.textContent = ""));
    messages.querySelectorAll(".error-note").forEach((note) => note.remove());
  }

  // A text over its limit is refused beside its field as it is typed or pasted (never cut: the browser's
  // maxlength would drop the rest of a paste without a word); the server refuses it too.
  function tooLong(field) {
    if (!field || !field.dataset.maxChars) return false;
    const limit = Number(field.dataset.maxChars);
    const length = [...field.value].length; // characters as the server counts them, not UTF-16 units
    const slot = document.querySelector('[data-error-for="' + field.name + '"]');
    const over = length > limit;
    if (slot && (over || slot.dataset.length)) {
      slot.textContent = over
        ? (LABELS[field.name] || field.name) + " is longer than " + limit.toLocaleString("en") +
          " characters (it has " + length.toLocaleString("en") + "): shorten it."
        : "";
      if (over) slot.dataset.length = "1";
      else delete slot.dataset.length;
    }
    return over;
  }

  function lengthsChanged() {
    state.tooLong = tooLong(content) || tooLong(settingsForm.elements.system);
    updateButtons();
  }

  function updateContext() {
    const meter = $("context-meter");
    const label = $("context-text");
    const warning = $("context-warning");
    if (!state.context) return;
    const used = state.used + state.generated;
    meter.value = Math.min(1, used / state.context);
    label.textContent = used + " of " + state.context + " context tokens used (prompt + answer)";
    const maxNew = Number(settingsForm.elements.max_new_tokens.value) || 0;
    const next = state.streaming ? state.used + (state.maxNew || 0) : used + maxNew;
    const over = next > 0.9 * state.context;
    warning.hidden = !over;
    warning.textContent = over
      ? "The conversation plus max new tokens (" + next + " tokens) passes 90% of the model's context of " +
        state.context + " tokens: lower max new tokens or start a new chat."
      : "";
  }

  function updateButtons() {
    const open = state.socket && state.socket.readyState === WebSocket.OPEN;
    sendButton.disabled = state.streaming || !open || state.sessionEnded || Boolean(state.tooLong);
    root.classList.toggle("busy", Boolean(state.streaming)); // no version actions while one streams
    stopButton.disabled = !state.streaming;
  }

  function setConnection(text) {
    connection.textContent = text;
  }

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  function el(tag, className) {
    const node = document.createElement(tag);
    node.className = className;
    return node;
  }

  function contextFromCatalog() {
    const option = settingsForm.elements.model.selectedOptions[0];
    state.context = option && option.dataset.context ? Number(option.dataset.context) : null;
    updateContext();
  }

  contextFromCatalog();
  lengthsChanged(); // a prompt from the library may already be over the limit
  connect();
  scrollDown();
})();
