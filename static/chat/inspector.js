// The chat token inspector. Every saved answer (li.msg.assistant#message-<pk>, not streaming) gets a
// "Tokens" toggle that shows the answer as clickable token chips; a chip opens the panel: the token's
// probability, the alternatives the sampler left (each can branch the answer), and the attention of that
// step's last position over the context, for every layer and head (API in playground/chat/inspector.py).
// Model text and token labels are only ever inserted with textContent.
(function () {
  "use strict";
  const panel = document.getElementById("token-inspector");
  const messages = document.getElementById("messages");
  if (!panel || !messages) return;
  const TOKENS_URL = panel.dataset.tokensUrl; // .../message/0/tokens/
  const TOKEN_URL = panel.dataset.tokenUrl; // .../message/0/token/0/
  const CELL_W = 36, CELL_H = 10, GAP = 2, LABEL_W = 26, HEAD_LABEL_H = 12;
  let opener = null; // the chip that opened the panel: focus goes back to it on close
  let current = null; // {data, layer, head}

  // --- helpers -------------------------------------------------------------------------------
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  // null: a remote server that returned no probabilities
  const percent = (p) => (p === null || p === undefined ? "unknown" :
    (p * 100 >= 10 ? (p * 100).toFixed(1) : (p * 100).toPrecision(2)) + "%");

  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    } catch (err) {
      throw new Error("The server could not be reached: " + err.message);
    }
    const type = response.headers.get("content-type") || "";
    if (!type.includes("application/json")) {
      throw new Error(response.redirected ? "Your session ended: reload the page and log in again."
                                          : "The server answered " + response.status + ".");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || "The server answered " + response.status + ".");
    return body;
  }

  function messageId(li) {
    return Number(li.id.replace("message-", ""));
  }

  // --- the Tokens toggle on each saved answer --------------------------------------------------
  function attach(li) {
    if (li.querySelector(":scope > .tokens-toggle") || !/^message-\d+$/.test(li.id)) return;
    if (!li.dataset.status || li.dataset.status === "streaming") return;
    const id = messageId(li);
    const toggle = el("button", "tokens-toggle secondary", "Tokens");
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    toggle.setAttribute("aria-controls", "tokens-" + id);
    toggle.title = "Show the answer token by token; click a token to inspect it";
    const box = el("div", "token-chips");
    box.id = "tokens-" + id;
    box.hidden = true;
    toggle.addEventListener("click", () => toggleTokens(id, toggle, box));
    li.append(toggle, box);
  }

  async function toggleTokens(id, toggle, box) {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    box.hidden = !open;
    if (!open || box.dataset.loaded) return;
    box.replaceChildren(el("span", "hint", "Loading tokens…"));
    try {
      const data = await getJSON(TOKENS_URL.replace("/0/tokens/", "/" + id + "/tokens/"));
      box.dataset.loaded = "1";
      box.replaceChildren(...data.tokens.map((t) => chip(id, t, data.tokens.length)));
      if (data.tail) box.append(el("span", "tail", data.tail));
    } catch (err) {
      const note = el("p", "message error", err.message);
      note.setAttribute("role", "alert");
      box.replaceChildren(note);
    }
  }

  function chip(id, token, count) {
    const button = el("button", "tok", token.label);
    button.type = "button";
    button.dataset.index = token.index;
    button.dataset.message = id;
    // Less likely tokens are tinted warmer: where the sampler took a chance is visible at a glance.
    button.style.setProperty("--doubt", String(Math.min(1, Math.max(0, 1 - token.prob)).toFixed(3)));
    button.title = "Token " + (token.index + 1) + " of " + count + ": " + percent(token.prob);
    button.setAttribute("aria-label", "Token " + (token.index + 1) + ", " + token.label + ", " + percent(token.prob));
    button.addEventListener("click", () => openToken(id, token.index, button));
    return button;
  }

  // --- the panel -----------------------------------------------------------------------------
  async function openToken(id, index, button) {
    opener = button;
    document.querySelectorAll(".token-chips .tok.selected").forEach((b) => b.classList.remove("selected"));
    button.classList.add("selected");
    panel.hidden = false;
    panel.replaceChildren(header("Token " + (index + 1)), el("p", "hint", "Running the model over this step's context…"));
    panel.setAttribute("aria-busy", "true");
    panel.focus();
    try {
      const data = await getJSON(TOKEN_URL.replace("/0/token/0/", "/" + id + "/token/" + index + "/"));
      if (opener !== button) return; // another chip was clicked meanwhile
      render(data);
    } catch (err) {
      const note = el("p", "message error", err.message);
      note.setAttribute("role", "alert");
      panel.replaceChildren(header("Token " + (index + 1)), note);
    } finally {
      panel.removeAttribute("aria-busy");
    }
  }

  function header(title) {
    const head = el("div", "ti-head");
    const h = el("h2", "", title);
    h.id = "token-inspector-title";
    const close = el("button", "ti-close secondary", "×");
    close.type = "button";
    close.title = "Close (Escape)";
    close.setAttribute("aria-label", "Close the token inspector");
    close.addEventListener("click", closePanel);
    head.append(h, close);
    return head;
  }

  function closePanel() {
    if (panel.hidden) return;
    panel.hidden = true;
    panel.replaceChildren();
    current = null;
    if (opener && opener.isConnected) opener.focus();
  }

  function render(data) {
    const total = data.context.prompt_tokens + data.context.generated_before;
    const tokenLine = el("p", "ti-token");
    tokenLine.append(el("code", "ti-label", data.token.label), " ");
    const prob = el("strong", "ti-prob", percent(data.token.prob));
    prob.dataset.testid = "token-prob";
    tokenLine.append("probability ", prob, " after the sampler");
    const chosen = data.alternatives.find((a) => a.chosen);
    if (chosen && data.token.prob !== null && Math.abs(chosen.prob - data.token.prob) > 1e-6) {
      tokenLine.append(" · " + percent(chosen.prob) + " in the model's own distribution");
    }
    const intro = el("p", "hint", "Token " + (data.index + 1) + " of the answer from " + data.model +
      (data.remote ? ", served by " + data.remote + "." :
        ", chosen after reading " + total + " tokens (" + data.context.prompt_tokens + " of prompt, " +
        data.context.generated_before + " already written)."));
    panel.replaceChildren(header("Token " + (data.index + 1)), tokenLine, intro);
    data.notes.forEach((n) => panel.append(el("p", "message", n)));
    if (data.greedy && data.remote) {
      panel.append(el("p", "hint", "Greedy decoding (temperature 0) always takes the likeliest token; the " +
        "probabilities below are the ones " + data.remote + " returned."));
    } else if (data.greedy) {
      panel.append(el("p", "hint", "Greedy decoding (temperature 0) always takes the likeliest token, so the " +
        "alternatives below show the model's own probabilities."));
    }
    panel.append(alternatives(data));
    panel.append(el("h3", "", "Attention at this step"));
    if (!data.attention) {
      panel.append(el("p", "message error", data.attention_error || "No attention for this step."));
      return;
    }
    panel.append(el("p", "hint",
      "What the last position looked at when it chose this token: one row per layer, one cell per head, " +
      "each cell the head's weights over the context from left (first token) to right. Click a cell or " +
      "use the arrow keys to read a head over the tokens."));
    current = { data: data, layer: data.attention.layers - 1, head: 0 };
    panel.append(grid(data.attention), el("p", "ti-selected"), contextChips(data));
    select(current.layer, current.head);
  }

  function alternatives(data) {
    const box = el("div", "ti-alts");
    box.append(el("h3", "", "Alternatives after the sampler"));
    const list = el("ol", "ti-alt-list");
    const api = window.chatPage;
    const canBranch = !!(api && typeof api.branchFrom === "function");
    const top = Math.max(...data.alternatives.map((a) => a.prob), 1e-9);
    data.alternatives.forEach((a, i) => {
      const prev = data.alternatives[i - 1];
      if (prev && a.rank > prev.rank + 1) {
        // the chosen token ranked below the top ones: it follows them, with the gap shown
        list.append(el("li", "ti-gap", "… " + (a.rank - prev.rank - 1).toLocaleString() + " likelier tokens not shown …"));
      }
      const item = el("li", a.chosen ? "chosen" : "");
      const rank = el("span", "ti-rank", "#" + a.rank);
      rank.title = a.rank === 1 ? "The likeliest token here" : "Rank " + a.rank + " among all tokens here";
      const label = el("code", "ti-label", a.label);
      const bar = el("span", "ti-bar");
      const fill = el("span", "ti-fill");
      fill.style.width = (100 * a.prob / top).toFixed(1) + "%";
      bar.append(fill);
      const value = el("span", "ti-value", percent(a.prob) + (a.chosen ? " (chosen)" : ""));
      const branch = el("button", "ti-branch secondary", "Branch from here");
      branch.type = "button";
      if (a.chosen) {
        branch.disabled = true;
        branch.title = "This is the token the answer already took";
      } else if (data.remote) {
        branch.disabled = true;
        branch.title = "A remote server names its tokens by text, not by id: branching needs the model's weights here";
      } else if (!canBranch) {
        branch.disabled = true;
        branch.title = "Branching is not available on this page";
      } else {
        branch.title = "Write a new version of this answer that takes " + a.label + " here";
        branch.addEventListener("click", () => {
          window.chatPage.branchFrom(data.message, data.index, a.id);
          closePanel();
        });
      }
      item.append(rank, label, bar, value, branch);
      list.append(item);
    });
    box.append(list);
    if (!data.alternatives.length) box.append(el("p", "hint", "No alternatives were recorded for this token."));
    else if (!data.chosen_listed) {
      box.append(el("p", "hint", "The chosen token ranked below these; this answer was saved before ranks " +
        "were recorded, so its rank is not known."));
    }
    return box;
  }

  // One canvas: a row per layer, a cell per head, each cell a strip of that head's weights over the
  // context (max-pooled to the cell's width, square-root shading so small weights still show).
  function grid(attention) {
    const L = attention.layers, H = attention.heads;
    const canvas = el("canvas", "ti-grid");
    const width = LABEL_W + H * (CELL_W + GAP), height = HEAD_LABEL_H + L * (CELL_H + GAP);
    const scale = window.devicePixelRatio || 1;
    canvas.width = width * scale;
    canvas.height = height * scale;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    canvas.tabIndex = 0;
    canvas.dataset.layers = L;
    canvas.dataset.heads = H;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "Attention of this step: " + L + " layers by " + H + " heads");
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect();
      const head = Math.floor((e.clientX - r.left - LABEL_W) / (CELL_W + GAP));
      const layer = Math.floor((e.clientY - r.top - HEAD_LABEL_H) / (CELL_H + GAP));
      if (layer >= 0 && layer < L && head >= 0 && head < H) select(layer, head);
    });
    canvas.addEventListener("mousemove", (e) => {
      const r = canvas.getBoundingClientRect();
      const head = Math.floor((e.clientX - r.left - LABEL_W) / (CELL_W + GAP));
      const layer = Math.floor((e.clientY - r.top - HEAD_LABEL_H) / (CELL_H + GAP));
      canvas.title = layer >= 0 && layer < L && head >= 0 && head < H ? describe(layer, head) : "";
    });
    canvas.addEventListener("keydown", (e) => {
      const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      const move = moves[e.key];
      if (!move || !current) return;
      e.preventDefault();
      select(Math.min(L - 1, Math.max(0, current.layer + move[0])),
             Math.min(H - 1, Math.max(0, current.head + move[1])));
    });
    const caption = el("p", "ti-grid-caption hint", L + " layers × " + H + " heads (" + attention.kv_heads +
      " key/value heads) · computed in " + attention.forward_ms + " ms");
    caption.dataset.testid = "grid-caption";
    const box = el("div", "ti-grid-box");
    box.append(canvas, caption);
    return box;
  }

  function draw() {
    const canvas = panel.querySelector("canvas.ti-grid");
    if (!canvas || !current) return;
    const rows = current.data.attention.rows;
    const L = rows.length, H = rows[0].length, T = rows[0][0].length;
    const ctx = canvas.getContext("2d");
    const scale = window.devicePixelRatio || 1;
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "9px system-ui, sans-serif";
    ctx.fillStyle = "#6b6b70";
    ctx.textBaseline = "top";
    for (let h = 0; h < H; h++) ctx.fillText("h" + h, LABEL_W + h * (CELL_W + GAP) + 2, 1);
    const bins = Math.min(T, CELL_W);
    for (let l = 0; l < L; l++) {
      const y = HEAD_LABEL_H + l * (CELL_H + GAP);
      ctx.fillStyle = "#6b6b70";
      ctx.fillText(String(l), 2, y);
      for (let h = 0; h < H; h++) {
        const x = LABEL_W + h * (CELL_W + GAP);
        const row = rows[l][h];
        ctx.fillStyle = "#f1f2f6";
        ctx.fillRect(x, y, CELL_W, CELL_H);
        for (let b = 0; b < bins; b++) {
          const from = Math.floor(b * T / bins), to = Math.max(from + 1, Math.floor((b + 1) * T / bins));
          let peak = 0;
          for (let t = from; t < to; t++) peak = Math.max(peak, row[t]);
          ctx.fillStyle = "rgba(58, 91, 217, " + Math.sqrt(peak).toFixed(3) + ")";
          ctx.fillRect(x + b * CELL_W / bins, y, CELL_W / bins + 0.3, CELL_H);
        }
      }
    }
    const sx = LABEL_W + current.head * (CELL_W + GAP), sy = HEAD_LABEL_H + current.layer * (CELL_H + GAP);
    ctx.strokeStyle = "#e07a00";
    ctx.lineWidth = 2;
    ctx.strokeRect(sx - 1, sy - 1, CELL_W + 2, CELL_H + 2);
  }

  function describe(layer, head) {
    const data = current.data;
    const row = data.attention.rows[layer][head];
    let best = 0;
    for (let t = 1; t < row.length; t++) if (row[t] > row[best]) best = t;
    return "Layer " + layer + ", head " + head + ": most attention (" + percent(row[best]) + ") on token " +
      (best + 1) + " " + data.context.labels[best];
  }

  function select(layer, head) {
    if (!current) return;
    current.layer = layer;
    current.head = head;
    draw();
    const selected = panel.querySelector(".ti-selected");
    if (selected) selected.textContent = describe(layer, head);
    const row = current.data.attention.rows[layer][head];
    panel.querySelectorAll(".ti-context .ctx").forEach((span, t) => {
      span.style.setProperty("--w", Math.sqrt(row[t]).toFixed(3));
      span.title = "Token " + (t + 1) + ": " + percent(row[t]);
    });
  }

  function contextChips(data) {
    const box = el("div", "ti-context");
    box.setAttribute("aria-label", "The context, shaded by the selected head's attention");
    data.context.labels.forEach((label, t) => {
      const span = el("span", "ctx" + (t >= data.context.prompt_tokens ? " generated" : ""), label);
      box.append(span);
    });
    return box;
  }

  // --- wiring --------------------------------------------------------------------------------
  function scan() {
    messages.querySelectorAll("li.msg.assistant[id^='message-']").forEach(attach);
  }
  new MutationObserver(scan).observe(messages, { childList: true, subtree: true, attributes: true,
                                                 attributeFilter: ["data-status"] });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !panel.hidden) {
      e.preventDefault();
      closePanel();
    }
  });
  scan();
})();
