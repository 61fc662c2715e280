function (id) {
  /* relevance.views: the interactive part of the attention views (head, model, neuron, flow).
     Inlined into every view and called with the view's element id: no loader, no network, no globals.
     The static drawing rendered in Python stays as it is until this script replaces it with the same
     drawing, so a failure here never leaves the view blank. */
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var STEPS = 20;
  var root = document.getElementById(id);
  if (!root || root.getAttribute("data-rv-ready")) { return; }
  var data = JSON.parse(document.getElementById(id + "-data").textContent);

  function decode(item) {
    var raw = atob(item.b64), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return { values: new Float32Array(bytes.buffer), shape: item.shape };
  }
  function matrix(array, layer, head) {  /* (n, n) slice of an (L, H, n, n) array as a function */
    var n = array.shape[2], offset = (layer * array.shape[1] + head) * n * n, v = array.values;
    return function (i, j) { return v[offset + i * n + j]; };
  }
  function num(x) { x = Math.round(x * 2) / 2; return String(x); }
  function fmt(x) { return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toFixed(3); }
  function svgEl(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    for (var key in attrs) { if (attrs.hasOwnProperty(key)) { node.setAttribute(key, attrs[key]); } }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function q(selector) { return root.querySelector(selector); }
  function qa(selector, within) { return Array.prototype.slice.call((within || root).querySelectorAll(selector)); }

  /* ---- lines between two token columns (head view, model view detail) */
  function Lines(svg, layout, colours, minWeight) {
    this.svg = svg; this.layout = layout; this.colours = colours; this.minWeight = minWeight;
    this.base = svg.querySelector(".rv-base"); this.highlight = svg.querySelector(".rv-highlight");
  }
  Lines.prototype.y = function (i) { var l = this.layout; return l.top + i * l.row + l.row / 2; };
  Lines.prototype.draw = function (heads, get, n) {  /* get(head) -> (i, j) -> weight */
    var l = this.layout, x0 = num(l.left), x1 = num(l.left + l.lines);
    clear(this.base);
    for (var a = 0; a < heads.length; a++) {
      var head = heads[a], w = get(head), buckets = [];
      for (var s = 0; s <= STEPS; s++) { buckets.push(""); }
      for (var i = 0; i < n; i++) {
        for (var j = 0; j < n; j++) {
          var weight = w(i, j);
          if (weight >= this.minWeight) {
            buckets[Math.ceil(weight * STEPS)] += "M" + x0 + " " + num(this.y(i)) + "L" + x1 + " " + num(this.y(j));
          }
        }
      }
      for (var step = 1; step <= STEPS; step++) {
        if (!buckets[step]) { continue; }
        svgEl("path", { "data-head": head, "data-step": step, stroke: this.colours[head],
          "stroke-opacity": (step / STEPS).toFixed(2), "stroke-width": "2", fill: "none", d: buckets[step] }, this.base);
      }
    }
    this.heads = heads; this.get = get; this.n = n;
  };
  Lines.prototype.hover = function (side, index) {  /* only the lines of one token, each with its weight */
    var l = this.layout, self = this;
    clear(this.highlight);
    qa("text.rv-token", this.svg).forEach(function (t) { t.classList.remove("rv-active"); });
    if (side === null) { this.base.style.display = ""; return; }
    this.base.style.display = "none";
    qa('text.rv-token[data-side="' + side + '"][data-index="' + index + '"]', this.svg)
      .forEach(function (t) { t.classList.add("rv-active"); });
    this.heads.forEach(function (head) {
      var w = self.get(head);
      for (var other = 0; other < self.n; other++) {
        var i = side === "q" ? index : other, j = side === "q" ? other : index, weight = w(i, j);
        if (weight < self.minWeight) { continue; }
        svgEl("line", { "class": "rv-hl", "data-head": head, "data-q": i, "data-k": j, "data-w": weight,
          x1: num(l.left), y1: num(self.y(i)), x2: num(l.left + l.lines), y2: num(self.y(j)),
          stroke: self.colours[head], "stroke-opacity": Math.min(1, 0.15 + weight).toFixed(3),
          "stroke-width": "2.5" }, self.highlight);
      }
    });
  };
  Lines.prototype.listen = function () {
    var self = this;
    qa("text.rv-token", this.svg).forEach(function (t) {
      t.addEventListener("mouseenter", function () {
        self.hover(t.getAttribute("data-side"), +t.getAttribute("data-index"));
        if (self.onHover) { self.onHover(t.getAttribute("data-side"), +t.getAttribute("data-index")); }
      });
      t.addEventListener("mouseleave", function () {
        self.hover(null); if (self.onHover) { self.onHover(null, -1); }
      });
    });
  };

  function headSwatches(state, redraw) {
    qa(".rv-swatch").forEach(function (s) {
      function toggle() {
        var head = +s.getAttribute("data-head"), at = state.heads.indexOf(head);
        if (at >= 0 && state.heads.length > 1) { state.heads.splice(at, 1); }
        else if (at < 0) { state.heads.push(head); state.heads.sort(function (a, b) { return a - b; }); }
        qa(".rv-swatch").forEach(function (x) {
          x.classList.toggle("rv-off", state.heads.indexOf(+x.getAttribute("data-head")) < 0);
        });
        redraw();
      }
      s.addEventListener("click", toggle);
      s.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
    });
  }
  function headsText(heads, total) {
    return heads.length === total ? "all heads" : (heads.length === 1 ? "head " : "heads ") + heads.join(", ");
  }

  /* ---- head view (Vig 2019) */
  function headView() {
    var attention = decode(data.attention), n = data.tokens.length, total = attention.shape[1];
    var state = { layer: data.layer, heads: data.heads.slice() };
    var lines = new Lines(q("svg.rv-lines"), data.layout, data.colours, data.minWeight);
    var note = q(".rv-note"), select = q("select.rv-layer");
    function redraw() {
      lines.draw(state.heads, function (h) { return matrix(attention, state.layer, h); }, n);
      note.textContent = "Block " + state.layer + ", " + headsText(state.heads, total) +
        ": line opacity = attention weight; hover a token to see only its lines.";
    }
    select.addEventListener("change", function () { state.layer = +select.value; redraw(); });
    headSwatches(state, redraw);
    lines.listen();
    redraw();
    q(".rv-controls").hidden = false;
  }

  /* ---- model view (Vig 2019): thumbnails of every head, one opened below */
  function modelView() {
    var attention = decode(data.attention), n = data.tokens.length;
    var layers = attention.shape[0], heads = attention.shape[1], size = data.thumb;
    var state = { layer: data.layer, head: data.head, side: null, index: -1 };
    var grid = q(".rv-thumbs"), canvases = [];
    var lines = new Lines(q("svg.rv-lines"), data.layout, data.colours, data.minWeight);
    var caption = q(".rv-detail-caption");
    grid.style.gridTemplateColumns = "auto repeat(" + heads + ", " + size.width + "px)";
    grid.appendChild(document.createElement("span"));
    for (var h = 0; h < heads; h++) {
      var label = document.createElement("span"); label.className = "rv-label"; label.textContent = "head " + h;
      grid.appendChild(label);
    }
    function y(i) { return 4 + (i + 0.5) * (size.height - 8) / n; }
    function paint(canvas) {
      var l = +canvas.getAttribute("data-layer"), hd = +canvas.getAttribute("data-head");
      var w = matrix(attention, l, hd), ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, size.width, size.height);
      ctx.strokeStyle = data.colours[hd]; ctx.lineWidth = 1;
      for (var i = 0; i < n; i++) {
        for (var j = 0; j < n; j++) {
          var weight = w(i, j), mine = state.side === "q" ? i === state.index : state.side === "k" ? j === state.index : true;
          if (weight < data.minWeight) { continue; }
          ctx.globalAlpha = mine ? Math.min(1, state.side ? 0.25 + weight : weight) : weight * 0.12;
          ctx.lineWidth = mine && state.side ? 1.8 : 1;
          ctx.beginPath(); ctx.moveTo(4, y(i)); ctx.lineTo(size.width - 4, y(j)); ctx.stroke();
        }
      }
      ctx.globalAlpha = 1;
      canvas.classList.toggle("rv-selected", l === state.layer && hd === state.head);
    }
    function paintAll() { canvases.forEach(paint); }
    function open() {
      lines.draw([state.head], function (hd) { return matrix(attention, state.layer, hd); }, n);
      caption.textContent = "Block " + state.layer + ", head " + state.head;
      paintAll();
    }
    for (var l = 0; l < layers; l++) {
      var rowLabel = document.createElement("span"); rowLabel.className = "rv-label"; rowLabel.textContent = "block " + l;
      grid.appendChild(rowLabel);
      for (var hd = 0; hd < heads; hd++) {
        var canvas = document.createElement("canvas");
        canvas.width = size.width; canvas.height = size.height;
        canvas.setAttribute("data-layer", l); canvas.setAttribute("data-head", hd);
        canvas.title = "block " + l + ", head " + hd + ": click to open";
        canvas.addEventListener("click", (function (c) {
          return function () { state.layer = +c.getAttribute("data-layer"); state.head = +c.getAttribute("data-head"); open(); };
        })(canvas));
        grid.appendChild(canvas); canvases.push(canvas);
      }
    }
    lines.onHover = function (side, index) { state.side = side; state.index = index; paintAll(); };
    lines.listen();
    open();
    q(".rv-fallback").hidden = true; grid.hidden = false; q(".rv-controls").hidden = false;
  }

  var views = { head: headView, model: modelView };
  try {
    views[data.kind]();
    root.setAttribute("data-rv-ready", "1");
  } catch (error) {
    root.setAttribute("data-rv-error", String(error));
    if (window.console) { console.warn("relevance view " + id + ": static drawing kept (" + error + ")"); }
  }
}
