// Attention explorer: draws captured attention on <canvas>.
//
// The page holds a small JSON meta per capture (tokens, layers, heads, key/value groups, URLs). The model
// view reads one uint8 overview (L, H, S, S), the head and line views read one head (or a layer's mean) as
// float16 (T, T), fetched on demand. Token text only ever reaches the page through textContent or canvas
// fillText, never as HTML.
(function () {
  "use strict";

  // --- numbers ---------------------------------------------------------------------------------------
  // float16 -> float32 by table: 65536 entries, built once (Float16Array is not in every browser yet).
  const F16 = (function () {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const frac = h & 0x3ff;
      if (exp === 0) table[h] = sign * frac * Math.pow(2, -24);
      else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
      else table[h] = sign * (1 + frac / 1024) * Math.pow(2, exp - 15);
    }
    return table;
  })();

  function decodeFloat16(buffer) {
    const half = new Uint16Array(buffer);
    const out = new Float32Array(half.length);
    for (let i = 0; i < half.length; i++) out[i] = F16[half[i]];
    return out;
  }

  // White -> deep blue, so "no attention" is the page's own white and masked cells (hatched grey) stand out.
  const STOPS = [[0, [255, 255, 255]], [0.2, [214, 228, 245]], [0.45, [130, 177, 222]],
                 [0.7, [50, 117, 186]], [1, [8, 45, 107]]];
  const LUT = (function () {
    const lut = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) {
      const t = i / 255;
      let k = 0;
      while (k < STOPS.length - 2 && t > STOPS[k + 1][0]) k++;
      const [t0, c0] = STOPS[k], [t1, c1] = STOPS[k + 1];
      const f = (t - t0) / (t1 - t0);
      for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(c0[c] + f * (c1[c] - c0[c]));
    }
    return lut;
  })();

  const ACCENT = "#3a5bd9";
  const HIGHLIGHT = "#e8590c";
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

  function hatchPattern(ctx) {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 6;
    const t = tile.getContext("2d");
    t.fillStyle = "#e4e4df";
    t.fillRect(0, 0, 6, 6);
    t.strokeStyle = "#b9b9b2";
    t.lineWidth = 1;
    t.beginPath();
    t.moveTo(-1, 7); t.lineTo(7, -1);
    t.moveTo(-1, 1); t.lineTo(1, -1);
    t.moveTo(5, 7); t.lineTo(7, 5);
    t.stroke();
    return ctx.createPattern(tile, "repeat");
  }

  function sizeCanvas(canvas, width, height) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(width * dpr));
    canvas.height = Math.max(1, Math.round(height * dpr));
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    ctx.font = FONT;
    return ctx;
  }

  function clamp(x, lo, hi) { return Math.max(lo, Math.min(hi, x)); }
  function shorten(label, max) { return label.length > max ? label.slice(0, max - 1) + "…" : label; }
  function fmt(w) { return w >= 0.001 || w === 0 ? w.toFixed(3) : w.toExponential(1); }

  class GoneError extends Error {}

  // --- one capture ------------------------------------------------------------------------------------
  class Panel {
    constructor(root) {
      this.root = root;
      this.meta = JSON.parse(document.getElementById(root.dataset.meta).textContent);
      this.el = (role) => root.querySelector(`[data-role="${role}"]`);
      this.layer = 0;
      this.head = 0; // a number, or "mean"
      this.view = "heatmap";
      this.token = null; // the selected token (row and column highlighted)
      this.hoverToken = null;
      this.windowStart = 0;
      this.data = null; // Float32Array (T*T) of the shown head
      this.cache = new Map(); // a few recently fetched heads
      this.overview = null;
      this.groups = this.kvGroups();
      this.bindControls();
      this.loadOverview();
    }

    kvGroups() {
      // Query heads that read the same key/value head, as [kvHead, firstHead, lastHead].
      const groups = [];
      this.meta.kv_head_of.forEach((kv, h) => {
        const last = groups[groups.length - 1];
        if (last && last[0] === kv) last[2] = h; else groups.push([kv, h, h]);
      });
      return groups;
    }

    // --- controls ---
    bindControls() {
      const m = this.meta;
      const layerSel = this.el("layer"), headSel = this.el("head");
      for (let l = 0; l < m.num_layers; l++) layerSel.add(new Option(`${l}`, `${l}`));
      headSel.add(new Option("mean of all heads", "mean"));
      for (let h = 0; h < m.num_heads; h++) {
        const kv = m.num_kv_heads < m.num_heads ? ` · kv ${m.kv_head_of[h]}` : "";
        headSel.add(new Option(`${h}${kv}`, `${h}`));
      }
      headSel.value = "0";
      layerSel.addEventListener("change", () => this.select(Number(layerSel.value), this.head));
      headSel.addEventListener("change", () =>
        this.select(this.layer, headSel.value === "mean" ? "mean" : Number(headSel.value)));
      this.root.querySelectorAll("[data-view]").forEach((button) => {
        button.addEventListener("click", () => {
          this.view = button.dataset.view;
          this.root.querySelectorAll("[data-view]").forEach((b) =>
            b.setAttribute("aria-pressed", String(b === button)));
          this.drawDetail();
        });
      });
      this.el("scale").addEventListener("change", () => {
        this.el("legend-scale").textContent = {
          sqrt: "0 → 1, √ scale", linear: "0 → 1", row: "0 → the largest weight of each row",
        }[this.scale()];
        this.drawModel();
        this.drawDetail();
      });
      this.el("window-start").addEventListener("change", (e) => {
        this.windowStart = Number(e.target.value) || 0;
        this.drawDetail();
      });
      this.root.querySelector("[data-action=rerun]").addEventListener("click", () => {
        const form = document.getElementById("attention-form");
        if (form.requestSubmit) form.requestSubmit(); else form.submit();
      });
      const model = this.el("model-view"), detail = this.el("detail");
      model.addEventListener("mousemove", (e) => this.modelHover(e));
      model.addEventListener("mouseleave", () => { this.modelHit = null; this.hideTip(); this.drawModel(); });
      model.addEventListener("click", (e) => this.modelClick(e));
      detail.addEventListener("mousemove", (e) => this.detailHover(e));
      detail.addEventListener("mouseleave", () => {
        this.hideTip();
        if (this.hoverToken !== null) { this.hoverToken = null; this.drawDetail(); }
      });
      detail.addEventListener("click", (e) => this.detailClick(e));
    }

    scale() { return this.el("scale").value; }

    // 0-255 colour level of a weight; rowPeak is the largest weight of its row (for the "row" scale).
    level(w, rowPeak) {
      const scale = this.scale();
      if (scale === "row") return rowPeak > 0 ? Math.round(255 * clamp(w / rowPeak, 0, 1)) : 0;
      return Math.round(255 * (scale === "sqrt" ? Math.sqrt(clamp(w, 0, 1)) : clamp(w, 0, 1)));
    }

    rowPeaks() {
      const T = this.meta.num_tokens, data = this.data, peaks = new Float32Array(T);
      for (let i = 0; i < T; i++) {
        let peak = 0;
        for (let j = 0; j < T; j++) if (data[i * T + j] > peak) peak = data[i * T + j];
        peaks[i] = peak;
      }
      return peaks;
    }

    status(text) { this.el("status").textContent = text; }

    async fetchBinary(url) {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.status === 404) {
        let message = "This capture is no longer kept on the server.";
        try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
        throw new GoneError(message);
      }
      if (!response.ok) throw new Error(`The server answered ${response.status}.`);
      return response.arrayBuffer();
    }

    failed(error) {
      this.status("");
      if (error instanceof GoneError) {
        this.el("gone-text").textContent = error.message;
        this.el("gone").hidden = false;
        this.el("gone").scrollIntoView({ block: "nearest" });
      } else {
        this.status(`Could not load the attention: ${error.message}`);
      }
    }

    async loadOverview() {
      this.status("Loading the model view…");
      try {
        this.overview = new Uint8Array(await this.fetchBinary(this.meta.overview.url));
        this.status("");
        this.drawModel();
        this.root.dataset.ready = "model";
        await this.select(0, 0);
      } catch (error) {
        this.failed(error);
      }
    }

    async select(layer, head) {
      this.layer = layer;
      this.head = head;
      this.el("layer").value = String(layer);
      this.el("head").value = String(head);
      this.drawModel();
      const key = `${layer}:${head}`;
      let data = this.cache.get(key);
      if (!data) {
        const url = (head === "mean" ? this.meta.mean_url : this.meta.head_url)
          .replace("{layer}", layer).replace("{head}", head);
        this.status("Loading…");
        try {
          data = decodeFloat16(await this.fetchBinary(url));
        } catch (error) {
          this.failed(error);
          return;
        }
        this.status("");
        this.cache.set(key, data);
        if (this.cache.size > 6) this.cache.delete(this.cache.keys().next().value);
      }
      if (this.layer !== layer || this.head !== head) return; // a later click won the race
      this.data = data;
      this.drawDetail();
      this.root.dataset.ready = "head";
    }

    // --- model view: layers across, heads down, each head max-pooled to S x S ---
    modelLayout() {
      const m = this.meta, [L, H, S] = m.overview.shape;
      const gqa = m.num_kv_heads < m.num_heads;
      const left = gqa ? 74 : 40, top = 32, gap = 3, groupGap = gqa ? 8 : 0;
      const width = Math.max(320, this.el("model-view").parentElement.clientWidth - 4);
      // As wide as the panel allows, but no taller than about 420 px: a 6-layer encoder with 12 heads
      // should not tower over a 30-layer decoder beside it.
      const fitWidth = Math.floor((width - left - 8) / L) - gap;
      const fitHeight = Math.floor((420 - (m.num_kv_heads - 1) * groupGap) / H) - gap;
      const cell = clamp(Math.min(fitWidth, fitHeight), 10, 64);
      const rowY = (h) => top + h * (cell + gap) + m.kv_head_of[h] * groupGap;
      const height = rowY(H - 1) + cell + 22;
      return { L, H, S, left, top, gap, cell, rowY, gqa,
               width: Math.max(width, left + L * (cell + gap) + 8), height };
    }

    drawModel() {
      if (!this.overview) return;
      const m = this.meta, lay = this.modelLayout();
      const { L, H, S, left, top, gap, cell, rowY } = lay;
      this.modelLayoutCache = lay;
      const canvas = this.el("model-view");
      const ctx = sizeCanvas(canvas, lay.width, lay.height);
      // Every head into one offscreen image (S x S per head); masked bins stay transparent over a hatch.
      const T = m.num_tokens, img = new ImageData(L * S, H * S), px = img.data, ov = this.overview;
      const sqrt = this.scale() !== "linear"; // the overview is pooled, so "row" shows it on the √ scale
      // Bin a covers tokens [a * bin, min((a + 1) * bin, T)); a bin is masked when all of it is in the future.
      const bin = m.overview.bin, lo = new Int32Array(S), hi = new Int32Array(S);
      for (let a = 0; a < S; a++) { lo[a] = a * bin; hi[a] = Math.min((a + 1) * bin, T); }
      for (let l = 0; l < L; l++) {
        for (let h = 0; h < H; h++) {
          const base = (l * H + h) * S * S;
          for (let a = 0; a < S; a++) {
            for (let b = 0; b < S; b++) {
              const p = ((h * S + a) * L * S + l * S + b) * 4;
              if (m.is_causal && lo[b] >= hi[a]) { px[p + 3] = 0; continue; }
              let v = ov[base + a * S + b];
              if (!sqrt) v = Math.round((v * v) / 255);
              px[p] = LUT[v * 3]; px[p + 1] = LUT[v * 3 + 1]; px[p + 2] = LUT[v * 3 + 2]; px[p + 3] = 255;
            }
          }
        }
      }
      const off = document.createElement("canvas");
      off.width = L * S; off.height = H * S;
      off.getContext("2d").putImageData(img, 0, 0);
      const hatch = hatchPattern(ctx);
      ctx.fillStyle = "#555";
      ctx.textAlign = "center";
      ctx.textBaseline = "alphabetic";
      for (let l = 0; l < L; l++) {
        const x = left + l * (cell + gap);
        if (cell + gap >= 20 || l % 5 === 0) ctx.fillText(String(l), x + cell / 2, top - 8);
        for (let h = 0; h < H; h++) {
          const y = rowY(h);
          ctx.fillStyle = m.is_causal ? hatch : "#fff";
          ctx.fillRect(x, y, cell, cell);
          ctx.drawImage(off, l * S, h * S, S, S, x, y, cell, cell);
        }
        ctx.fillStyle = "#555";
      }
      ctx.textAlign = "left";
      ctx.fillText("layer →", left, 11);
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (let h = 0; h < H; h++) ctx.fillText(`h${h}`, left - 6, rowY(h) + cell / 2);
      if (lay.gqa) {
        // A bracket per key/value head, spanning the query heads that share it.
        ctx.strokeStyle = "#8a8f9c";
        for (const [kv, first, last] of this.groups) {
          const y0 = rowY(first) + 2, y1 = rowY(last) + cell - 2, x = 30;
          ctx.beginPath();
          ctx.moveTo(x + 4, y0); ctx.lineTo(x, y0); ctx.lineTo(x, y1); ctx.lineTo(x + 4, y1);
          ctx.stroke();
          ctx.textAlign = "right";
          ctx.fillStyle = "#6b6b70";
          ctx.fillText(`kv${kv}`, x - 3, (y0 + y1) / 2);
        }
      }
      // The selected head (or the whole layer, for the mean) and the hovered one.
      const outline = (l, h0, h1, color, width) => {
        ctx.strokeStyle = color;
        ctx.lineWidth = width;
        const x = left + l * (cell + gap);
        ctx.strokeRect(x - 1.5, rowY(h0) - 1.5, cell + 3, rowY(h1) + cell - rowY(h0) + 3);
      };
      if (this.head === "mean") outline(this.layer, 0, H - 1, HIGHLIGHT, 2);
      else outline(this.layer, this.head, this.head, HIGHLIGHT, 2);
      if (this.modelHit) {
        const [l, h] = this.modelHit;
        if (h === "mean") outline(l, 0, H - 1, "#17181c", 1); else outline(l, h, h, "#17181c", 1);
      }
      ctx.lineWidth = 1;
    }

    modelHitAt(event) {
      const lay = this.modelLayoutCache;
      if (!lay) return null;
      const rect = this.el("model-view").getBoundingClientRect();
      const x = event.clientX - rect.left, y = event.clientY - rect.top;
      const l = Math.floor((x - lay.left) / (lay.cell + lay.gap));
      if (l < 0 || l >= lay.L || x - lay.left - l * (lay.cell + lay.gap) > lay.cell) return null;
      if (y < lay.top && y > 0) return [l, "mean"]; // the layer number opens the layer's mean
      for (let h = 0; h < lay.H; h++) {
        const y0 = lay.rowY(h);
        if (y >= y0 && y < y0 + lay.cell) return [l, h];
      }
      return null;
    }

    modelHover(event) {
      const hit = this.modelHitAt(event);
      const same = hit && this.modelHit && hit[0] === this.modelHit[0] && hit[1] === this.modelHit[1];
      this.modelHit = hit;
      if (!same) this.drawModel();
      if (!hit) { this.hideTip(); return; }
      const [l, h] = hit, m = this.meta;
      let text = h === "mean" ? `Layer ${l}: mean of all ${m.num_heads} heads` : `Layer ${l} · head ${h}`;
      if (h !== "mean" && m.num_kv_heads < m.num_heads) text += ` · key/value head ${m.kv_head_of[h]}`;
      this.showTip(event, [text, "click to open"]);
    }

    modelClick(event) {
      const hit = this.modelHitAt(event);
      if (hit) this.select(hit[0], hit[1]);
    }

    // --- detail views ---
    title() {
      const m = this.meta, h = this.head;
      if (h === "mean") return `Layer ${this.layer} · mean of all ${m.num_heads} heads`;
      let text = `Layer ${this.layer} · head ${h}`;
      if (m.num_kv_heads < m.num_heads) {
        const kv = m.kv_head_of[h];
        const sharing = m.kv_head_of.map((k, i) => (k === kv ? i : -1)).filter((i) => i >= 0);
        text += ` · reads key/value head ${kv}, shared with heads ${sharing.join(", ")}`;
      }
      return text;
    }

    drawDetail() {
      if (!this.data) return;
      this.el("title").textContent = this.title();
      this.el("window").hidden = true;
      if (this.view === "lines") this.drawLines(); else this.drawHeatmap();
    }

    heatLayout() {
      const T = this.meta.num_tokens, tokens = this.meta.tokens;
      const avail = Math.max(300, this.el("detail").parentElement.clientWidth - 8);
      let cell = clamp(Math.floor((Math.min(avail, 900) - 110) / T), 1, 30);
      const labels = cell >= 9;
      let margin = 40;
      if (labels) {
        const ctx = this.el("detail").getContext("2d");
        ctx.font = FONT;
        // Room for the longest label, plus a strip for the rotated axis title.
        margin = 30 + Math.min(110, Math.max(...tokens.map((t) => ctx.measureText(shorten(t, 16)).width)));
        cell = clamp(Math.floor((Math.min(avail, 900) - margin) / T), 1, 30);
      }
      return { T, cell, labels: cell >= 9, left: margin + (labels ? 0 : 16), top: margin, size: T * cell };
    }

    drawHeatmap() {
      const lay = this.heatLayout(), { T, cell, left, top, size } = lay;
      this.heatLayoutCache = lay;
      const m = this.meta, data = this.data, tokens = m.tokens;
      const canvas = this.el("detail");
      const ctx = sizeCanvas(canvas, left + size + 12, top + size + 12);
      const img = new ImageData(T, T), px = img.data, peaks = this.rowPeaks();
      for (let i = 0; i < T; i++) {
        for (let j = 0; j < T; j++) {
          const p = (i * T + j) * 4;
          if (m.is_causal && j > i) { px[p + 3] = 0; continue; }
          const v = this.level(data[i * T + j], peaks[i]) * 3;
          px[p] = LUT[v]; px[p + 1] = LUT[v + 1]; px[p + 2] = LUT[v + 2]; px[p + 3] = 255;
        }
      }
      const off = document.createElement("canvas");
      off.width = off.height = T;
      off.getContext("2d").putImageData(img, 0, 0);
      ctx.fillStyle = m.is_causal ? hatchPattern(ctx) : "#fff";
      ctx.fillRect(left, top, size, size);
      ctx.drawImage(off, left, top, size, size);
      ctx.strokeStyle = "#c9c9c4";
      ctx.strokeRect(left - 0.5, top - 0.5, size + 1, size + 1);
      // The selected token: its row (what it looks at) and its column (who looks at it).
      const sel = this.token;
      if (sel !== null) {
        ctx.strokeStyle = HIGHLIGHT;
        ctx.lineWidth = 2;
        ctx.strokeRect(left, top + sel * cell, size, cell);
        ctx.strokeRect(left + sel * cell, top, cell, size);
        ctx.lineWidth = 1;
      }
      ctx.fillStyle = "#333";
      if (lay.labels) {
        const font = `${clamp(cell - 2, 9, 13)}px system-ui, sans-serif`;
        ctx.font = font;
        ctx.textBaseline = "middle";
        for (let i = 0; i < T; i++) {
          const label = shorten(tokens[i], 16), bold = i === sel;
          ctx.fillStyle = bold ? HIGHLIGHT : "#333";
          ctx.font = bold ? `bold ${font}` : font;
          ctx.textAlign = "right";
          ctx.fillText(label, left - 6, top + i * cell + cell / 2);
          ctx.save();
          ctx.translate(left + i * cell + cell / 2, top - 6);
          ctx.rotate(-Math.PI / 2);
          ctx.textAlign = "left";
          ctx.fillText(label, 0, 0);
          ctx.restore();
        }
      } else {
        // Too many tokens to name each: number every tick-th one (hover names them).
        const tick = [10, 20, 50, 100, 200].find((t) => t * cell >= 40) || 500;
        ctx.textBaseline = "middle";
        for (let i = 0; i < T; i += tick) {
          ctx.textAlign = "right";
          ctx.fillText(String(i), left - 5, top + i * cell + cell / 2);
          ctx.textAlign = "center";
          ctx.fillText(String(i), left + i * cell + cell / 2, top - 10);
        }
      }
      ctx.fillStyle = "#6b6b70";
      ctx.font = FONT;
      ctx.textAlign = "left";
      ctx.textBaseline = "alphabetic";
      ctx.fillText("looks at →", 4, 12);
      ctx.save();
      ctx.translate(4, top + 4);
      ctx.rotate(Math.PI / 2);
      ctx.textBaseline = "bottom";
      ctx.fillText("token that looks →", 0, 0);
      ctx.restore();
    }

    heatHit(event) {
      const lay = this.heatLayoutCache;
      const rect = this.el("detail").getBoundingClientRect();
      const x = event.clientX - rect.left - lay.left, y = event.clientY - rect.top - lay.top;
      const i = Math.floor(y / lay.cell), j = Math.floor(x / lay.cell);
      const inRows = i >= 0 && i < lay.T, inCols = j >= 0 && j < lay.T;
      if (inRows && inCols) return { kind: "cell", i, j };
      if (inRows && x < 0) return { kind: "token", i };
      if (inCols && y < 0) return { kind: "token", i: j };
      return null;
    }

    detailHover(event) {
      if (!this.data) return;
      if (this.view === "lines") return this.lineHover(event);
      const hit = this.heatHit(event), m = this.meta;
      if (!hit) return this.hideTip();
      if (hit.kind === "token") {
        return this.showTip(event, [`“${m.tokens[hit.i]}” (token ${hit.i})`, "click to highlight its row and column"]);
      }
      const { i, j } = hit, q = `“${m.tokens[i]}” (${i})`, k = `“${m.tokens[j]}” (${j})`;
      if (m.is_causal && j > i) {
        return this.showTip(event, [`${q} → ${k}`, "masked: a token cannot look at later tokens"]);
      }
      const w = this.data[i * m.num_tokens + j];
      this.showTip(event, [`${q} looks at ${k}`, `weight ${fmt(w)} (${(100 * w).toFixed(1)}% of its attention)`]);
    }

    detailClick(event) {
      if (!this.data) return;
      let token = null;
      if (this.view === "lines") {
        const hit = this.lineHit(event);
        token = hit ? hit.i : null;
      } else {
        const hit = this.heatHit(event);
        token = hit ? hit.i : null;
      }
      this.token = token === null || token === this.token ? null : token;
      this.drawDetail();
    }

    // --- line view: queries on the left, keys on the right, one line per weight ---
    lineLayout() {
      const T = this.meta.num_tokens, span = 64;
      const start = T > span ? clamp(this.windowStart, 0, T - span) : 0;
      const end = Math.min(T, start + span);
      const width = clamp(this.el("detail").parentElement.clientWidth - 8, 360, 620);
      return { start, end, row: 18, top: 30, width, xl: width * 0.36, xr: width * 0.64 };
    }

    drawLines() {
      const m = this.meta, T = m.num_tokens, lay = this.lineLayout();
      this.lineLayoutCache = lay;
      const { start, end, row, top, width, xl, xr } = lay;
      if (T > end - start || start > 0) {
        this.el("window").hidden = false;
        const input = this.el("window-start");
        input.max = String(T - (end - start));
        input.value = String(start);
        this.el("window-text").textContent =
          `showing tokens ${start}–${end - 1} of ${T}; lines to tokens outside this window are not drawn`;
      }
      const ctx = sizeCanvas(this.el("detail"), width, top + (end - start) * row + 10);
      const focus = this.hoverToken !== null ? this.hoverToken : this.token;
      ctx.fillStyle = "#6b6b70";
      ctx.textAlign = "right";
      ctx.fillText("token that looks", xl - 8, 14);
      ctx.textAlign = "left";
      ctx.fillText("token looked at", xr + 8, 14);
      const y = (i) => top + (i - start) * row + row / 2;
      ctx.lineWidth = 2;
      ctx.strokeStyle = ACCENT;
      const peaks = this.rowPeaks();
      for (let i = start; i < end; i++) {
        if (focus !== null && i !== focus) continue;
        for (let j = start; j < end; j++) {
          const w = this.data[i * T + j];
          if (w < 0.004) continue;
          ctx.globalAlpha = (this.level(w, peaks[i]) / 255) * (focus === null ? 0.8 : 1);
          ctx.beginPath();
          ctx.moveTo(xl, y(i));
          ctx.bezierCurveTo((xl + xr) / 2, y(i), (xl + xr) / 2, y(j), xr, y(j));
          ctx.stroke();
        }
      }
      ctx.globalAlpha = 1;
      ctx.lineWidth = 1;
      ctx.textBaseline = "middle";
      for (let i = start; i < end; i++) {
        const label = shorten(m.tokens[i], 22);
        const isFocus = i === focus;
        ctx.font = isFocus ? `bold ${FONT}` : FONT;
        ctx.fillStyle = isFocus ? HIGHLIGHT : "#1d1d1f";
        ctx.textAlign = "right";
        ctx.fillText(label, xl - 8, y(i));
        // On the right, each key token is shaded by the weight the focused token gives it.
        if (focus !== null && m.is_causal && i > focus) {
          ctx.fillStyle = "#a3a3a0"; // a later token: masked, the focused token cannot look at it
        } else if (focus !== null) {
          const w = this.data[focus * T + i], v = this.level(w, peaks[focus]) * 3;
          ctx.fillStyle = `rgb(${LUT[v]},${LUT[v + 1]},${LUT[v + 2]})`;
          ctx.fillRect(xr + 4, y(i) - row / 2 + 1, Math.min(140, ctx.measureText(label).width + 8), row - 2);
          ctx.fillStyle = v > 150 * 3 ? "#fff" : "#1d1d1f";
        } else {
          ctx.fillStyle = "#1d1d1f";
        }
        ctx.font = FONT;
        ctx.textAlign = "left";
        ctx.fillText(label, xr + 8, y(i));
      }
    }

    lineHit(event) {
      const lay = this.lineLayoutCache;
      if (!lay) return null;
      const rect = this.el("detail").getBoundingClientRect();
      const x = event.clientX - rect.left, y = event.clientY - rect.top;
      const i = lay.start + Math.floor((y - lay.top) / lay.row);
      if (i < lay.start || i >= lay.end) return null;
      if (x <= lay.xl) return { i, side: "query" };
      if (x >= lay.xr) return { i, side: "key" };
      return null;
    }

    lineHover(event) {
      const hit = this.lineHit(event), m = this.meta;
      const token = hit && hit.side === "query" ? hit.i : null;
      if (token !== this.hoverToken) { this.hoverToken = token; this.drawLines(); }
      if (!hit) return this.hideTip();
      const focus = this.hoverToken !== null ? this.hoverToken : this.token;
      if (hit.side === "key" && focus !== null) {
        const w = this.data[focus * m.num_tokens + hit.i];
        const masked = m.is_causal && hit.i > focus;
        return this.showTip(event, [`“${m.tokens[focus]}” (${focus}) looks at “${m.tokens[hit.i]}” (${hit.i})`,
          masked ? "masked: a token cannot look at later tokens" : `weight ${fmt(w)}`]);
      }
      this.showTip(event, [`“${m.tokens[hit.i]}” (token ${hit.i})`,
        hit.side === "query" ? "its lines: where it looks; click to keep them" : "hover a token on the left"]);
    }

    // --- tooltip (text only) ---
    showTip(event, lines) {
      const tip = this.el("tooltip");
      tip.replaceChildren(...lines.map((line, n) => {
        const div = document.createElement("div");
        div.textContent = line;
        if (n === 0) div.className = "attn-tip-main";
        return div;
      }));
      tip.hidden = false;
      const box = this.root.getBoundingClientRect();
      let x = event.clientX - box.left + 14, y = event.clientY - box.top + 14;
      if (x + tip.offsetWidth > box.width) x = Math.max(0, event.clientX - box.left - tip.offsetWidth - 14);
      tip.style.left = x + "px";
      tip.style.top = y + "px";
    }

    hideTip() { this.el("tooltip").hidden = true; }

    redraw() { this.drawModel(); this.drawDetail(); }
  }

  // --- wiring ---------------------------------------------------------------------------------------
  const panels = [];

  function start(scope) {
    // Panels swapped out by a new run are dropped, so resizing redraws only what is on the page.
    for (let k = panels.length - 1; k >= 0; k--) if (!panels[k].root.isConnected) panels.splice(k, 1);
    scope.querySelectorAll("[data-attention-panel]").forEach((root) => {
      if (root.dataset.started) return;
      root.dataset.started = "1";
      panels.push(new Panel(root));
    });
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => panels.forEach((p) => p.root.isConnected && p.redraw()), 150);
  });
  document.addEventListener("DOMContentLoaded", () => start(document));
  document.addEventListener("htmx:afterSettle", (event) => start(event.detail.elt || document));

  window.attentionExplorer = { decodeFloat16, panels };
})();
