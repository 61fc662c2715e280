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

  /* ---- neuron view (Vig 2019; Hoover et al. 2020): vectors, products, scores and attention of one query */
  function neuronView() {
    var attention = decode(data.attention), queries = decode(data.queries), keys = decode(data.keys);
    var g = data.geometry, n = data.tokens.length, d = g.dim, heads = attention.shape[1];
    var state = { layer: data.layer, head: data.head, query: data.query };
    var svg = q("svg.rv-neuron-svg"), dynamic = svg.querySelector(".rv-dynamic");
    var highlight = svg.querySelector(".rv-highlight"), note = q(".rv-note"), select = q("select.rv-layer");
    function vector(array, layer, head, token) {
      var offset = ((layer * heads + head) * n + token) * d, out = [];
      for (var c = 0; c < d; c++) { out.push(array.values[offset + c]); }
      return out;
    }
    function colour(value, scale) {
      var v = scale > 0 ? value / scale : 0; v = Math.max(-1, Math.min(1, v));
      return data.table[Math.round((v + 1) * 127.5)];
    }
    function y(j) { return g.top + j * g.row + g.row / 2; }
    function cells(values, x, top, scale, css) {
      values.forEach(function (v, c) {
        svgEl("rect", { "class": css, x: num(x + c * g.cell), y: num(top + 2), width: g.cell - 1, height: g.row - 4,
          fill: colour(v, scale) }, dynamic);
      });
    }
    function render() {
      var L = state.layer, H = state.head, Q = state.query, scale = data.scales[L];
      var qv = vector(queries, L, H, Q), vectorScale = 0, productScale = 0, kvs = [], products = [], scores = [];
      var w = matrix(attention, L, H), top = 0;
      for (var t = 0; t < n; t++) {
        vector(queries, L, H, t).concat(vector(keys, L, H, t)).forEach(function (v) { vectorScale = Math.max(vectorScale, Math.abs(v)); });
      }
      for (var j = 0; j < n; j++) {
        var kv = vector(keys, L, H, j), p = kv.map(function (v, c) { return v * qv[c]; });
        var dot = p.reduce(function (a, b) { return a + b; }, 0);
        p.forEach(function (v) { productScale = Math.max(productScale, Math.abs(v)); });
        kvs.push(kv); products.push(p); scores.push(dot * scale); top = Math.max(top, w(Q, j));
      }
      vectorScale = vectorScale || 1; productScale = productScale || 1; top = top || 1;
      clear(dynamic); clear(highlight);
      cells(qv, g.left + g.lines + g.left, g.top - g.row - 2, vectorScale, "rv-q");
      var keysX = g.left + g.lines + g.left, productsX = keysX + d * g.cell + 14, scoresX = productsX + d * g.cell + 64;
      for (j = 0; j < n; j++) {
        cells(kvs[j], keysX, y(j) - g.row / 2, vectorScale, "rv-k");
        cells(products[j], productsX, y(j) - g.row / 2, productScale, "rv-p");
        svgEl("text", { "class": "rv-score", x: num(scoresX), y: num(y(j)), "text-anchor": "end",
          "dominant-baseline": "middle" }, dynamic).textContent = scores[j].toFixed(2);
        var weight = w(Q, j);
        svgEl("text", { "class": "rv-weight", x: num(scoresX + 12), y: num(y(j)), "dominant-baseline": "middle" },
          dynamic).textContent = weight.toFixed(3);
        svgEl("rect", { "class": "rv-bar", x: num(scoresX + 60), y: num(y(j) - g.row / 2 + 3),
          width: num(80 * weight / top), height: g.row - 6, fill: "#1f77b4" }, dynamic);
        if (weight >= 0.005) {
          svgEl("line", { "class": "rv-nl", "data-q": Q, "data-k": j, "data-w": weight, x1: num(g.left), y1: num(y(Q)),
            x2: num(g.left + g.lines), y2: num(y(j)), stroke: data.colours[H],
            "stroke-opacity": Math.min(1, 0.1 + weight).toFixed(3), "stroke-width": "2" }, highlight);
        }
      }
      qa("text.rv-token", svg).forEach(function (t) {
        t.classList.toggle("rv-active", t.getAttribute("data-side") === "q" && +t.getAttribute("data-index") === Q);
      });
      note.textContent = "Block " + L + ", head " + H + ", query " + JSON.stringify(data.tokens[Q]) +
        ": blue negative, red positive; scores = " + scale.toPrecision(3) + " q·k; hover a query token to select it.";
    }
    qa('text.rv-token[data-side="q"]', svg).forEach(function (t) {
      t.addEventListener("mouseenter", function () { state.query = +t.getAttribute("data-index"); render(); });
    });
    select.addEventListener("change", function () { state.layer = +select.value; render(); });
    qa(".rv-swatch").forEach(function (s) {
      function pick() {
        state.head = +s.getAttribute("data-head");
        qa(".rv-swatch").forEach(function (x) { x.classList.toggle("rv-off", x !== s); });
        render();
      }
      s.addEventListener("click", pick);
      s.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
    });
    render();
    q(".rv-controls").hidden = false;
  }

  /* ---- attention flows (DeRose, Wang & Berger 2020), rollout (Abnar & Zuidema 2020) or gradient x attention
     (Chefer et al. 2021): the same arithmetic as relevance.flows */
  function flowView() {
    var g = data.geometry, n = data.tokens.length, L = g.layers, colours = data.colours;
    var panels = data.panels.map(function (p) {
      return { attention: decode(p.attention), gradients: p.gradients ? decode(p.gradients) : null, readout: p.readout };
    });
    var state = { heads: data.heads.slice(), output: data.output, weights: data.weights, hover: null };
    var svgs = qa("svg.rv-flow-svg"), note = q(".rv-note");
    function x(layer) { return g.label + 8 + layer * g.column; }
    function y(i) { return g.top + i * g.row + g.row / 2; }
    function mixing(panel) {
      var out = [], A = panel.attention, G = panel.gradients, H = A.shape[1];
      for (var l = 0; l < L; l++) {
        var M = new Float64Array(n * n);
        state.heads.forEach(function (h) {
          var off = (l * H + h) * n * n;
          for (var e = 0; e < n * n; e++) {
            var a = A.values[off + e];
            M[e] += state.weights === "gradient" ? Math.max(0, G.values[off + e] * a) : a;
          }
        });
        for (var i = 0; i < n; i++) {
          var sum = 0;
          for (var j = 0; j < n; j++) {
            M[i * n + j] = M[i * n + j] / state.heads.length + (i === j ? 1 : 0); sum += M[i * n + j];
          }
          if (state.weights === "attention") { for (j = 0; j < n; j++) { M[i * n + j] /= sum; } }
        }
        out.push(M);
      }
      return out;
    }
    function outputVector(panel) {
      var v = new Float64Array(n);
      if (state.output === "readout") { for (var i = 0; i < n; i++) { v[i] = panel.readout[i]; } }
      else { v[+state.output] = 1; }
      return v;
    }
    function trace(M, v) {  /* nodes[l][i], edges[l][j * n + i] */
      var nodes = [], edges = [];
      nodes[L] = v;
      for (var l = L - 1; l >= 0; l--) {
        var E = new Float64Array(n * n), below = new Float64Array(n);
        for (var j = 0; j < n; j++) {
          for (var i = 0; i < n; i++) { E[j * n + i] = nodes[l + 1][j] * M[l][j * n + i]; below[i] += E[j * n + i]; }
        }
        edges[l] = E; nodes[l] = below;
      }
      return { nodes: nodes, edges: edges, mixing: M };
    }
    function through(flow, layer, token) {  /* the flow through one node: below it and above it */
      var M = flow.mixing, edges = [], l, i, j;
      var w = new Float64Array(n); w[token] = flow.nodes[layer][token];
      for (l = layer - 1; l >= 0; l--) {
        var E = new Float64Array(n * n), next = new Float64Array(n);
        for (j = 0; j < n; j++) { for (i = 0; i < n; i++) { E[j * n + i] = w[j] * M[l][j * n + i]; next[i] += E[j * n + i]; } }
        edges[l] = E; w = next;
      }
      var f = new Float64Array(n); f[token] = 1;
      for (l = layer; l < L; l++) {
        var F = new Float64Array(n * n), up = new Float64Array(n);
        for (j = 0; j < n; j++) {
          for (i = 0; i < n; i++) { F[j * n + i] = flow.nodes[l + 1][j] * M[l][j * n + i] * f[i]; up[j] += M[l][j * n + i] * f[i]; }
        }
        edges[l] = F; f = up;
      }
      return edges;
    }
    function maxAbs(arrays) {
      var top = 0;
      arrays.forEach(function (a) { for (var e = 0; e < a.length; e++) { top = Math.max(top, Math.abs(a[e])); } });
      return top || 1;
    }
    function path(l, i, j) {
      var x0 = x(l), x1 = x(l + 1), m = (x0 + x1) / 2;
      return "M" + num(x0) + " " + num(y(i)) + "C" + num(m) + " " + num(y(i)) + " " + num(m) + " " + num(y(j)) + " " + num(x1) + " " + num(y(j));
    }
    function drawEdges(group, edges, signed, top, css, colour, opacity, threshold) {
      clear(group);
      for (var l = 0; l < L; l++) {
        for (var j = 0; j < n; j++) {
          for (var i = 0; i < n; i++) {
            var f = edges[l][j * n + i];
            if (Math.abs(f) < threshold || f === 0) { continue; }
            svgEl("path", { "class": css, "data-layer": l, "data-from": i, "data-to": j, "data-flow": f, d: path(l, i, j),
              stroke: colour || (signed ? (f > 0 ? colours.more : colours.less) : colours.flow), "stroke-opacity": opacity,
              "stroke-width": (0.5 + 7.5 * Math.abs(f) / top).toFixed(2), fill: "none" }, group);
          }
        }
      }
    }
    function drawPanel(svg, flow, signed) {
      var topEdge = maxAbs(flow.edges), topNode = maxAbs(flow.nodes);
      drawEdges(svg.querySelector(".rv-base"), flow.edges, signed, topEdge, "rv-edge", null, "0.5", data.minFlow * topEdge);
      qa("circle.rv-node", svg).forEach(function (c) {
        var value = flow.nodes[+c.getAttribute("data-layer")][+c.getAttribute("data-index")];
        c.setAttribute("data-value", value);
        c.setAttribute("r", (1.5 + 5 * Math.sqrt(Math.abs(value) / topNode)).toFixed(2));
        c.setAttribute("fill", !signed ? "#222222" : Math.abs(value) <= 1e-9 * topNode ? "#999999" : value > 0 ? colours.more : colours.less);
      });
      svg.topEdge = topEdge;
    }
    var flows = [];
    function render() {
      flows = panels.map(function (p) { return trace(mixing(p), outputVector(p)); });
      flows.forEach(function (flow, index) { drawPanel(svgs[index], flow, false); });
      if (flows.length === 2) {
        var diff = { nodes: [], edges: [] };
        for (var l = 0; l <= L; l++) { diff.nodes[l] = flows[0].nodes[l].map(function (v, i) { return v - flows[1].nodes[l][i]; }); }
        for (l = 0; l < L; l++) { diff.edges[l] = flows[0].edges[l].map(function (v, e) { return v - flows[1].edges[l][e]; }); }
        drawPanel(svgs[2], diff, true);
      }
      var what = state.output === "readout" ? "the readout" : JSON.stringify(data.tokens[+state.output]);
      note.textContent = "Flow of " + what + " back to the input tokens (" +
        (state.weights === "gradient" ? "gradient × attention" : "attention rollout") + ", " +
        headsText(state.heads, panels[0].attention.shape[1]) +
        "): edge width = flow, dot area = flow through the token; hover a token to trace its flow.";
      highlight();
    }
    function highlight() {
      svgs.forEach(function (svg, index) {
        var group = svg.querySelector(".rv-highlight"), base = svg.querySelector(".rv-base");
        clear(group); base.style.opacity = "";
        qa("text.rv-token", svg).forEach(function (t) { t.classList.remove("rv-active"); });
        if (!state.hover) { return; }
        base.style.opacity = "0.15";
        var h = state.hover, edges;
        if (index < flows.length) { edges = through(flows[index], h.layer, h.index); }
        else {
          var a = through(flows[0], h.layer, h.index), b = through(flows[1], h.layer, h.index);
          edges = a.map(function (e, l) { return e.map(function (v, k) { return v - b[l][k]; }); });
        }
        var top = maxAbs(edges);
        group.setAttribute("data-totals", JSON.stringify(edges.map(function (e) {
          var total = 0; for (var k = 0; k < e.length; k++) { total += e[k]; } return total;
        })));
        drawEdges(group, edges, index >= flows.length, top, "rv-trace",
          index >= flows.length ? null : colours.trace, "0.85", data.minFlow * top);
        qa('text.rv-token[data-index="' + h.index + '"]', svg).forEach(function (t) {
          if ((t.getAttribute("data-side") === "in") === (h.layer === 0)) { t.classList.add("rv-active"); }
        });
      });
    }
    function hoverable(node, layer, index) {
      node.addEventListener("mouseenter", function () { state.hover = { layer: layer, index: index }; highlight(); });
      node.addEventListener("mouseleave", function () { state.hover = null; highlight(); });
    }
    var outputSelect = q("select.rv-output"), weightsSelect = q("select.rv-weights");
    svgs.forEach(function (svg) {
      qa("text.rv-token", svg).forEach(function (t) {
        var index = +t.getAttribute("data-index"), out = t.getAttribute("data-side") === "out";
        hoverable(t, out ? L : 0, index);
        if (out) {
          t.style.cursor = "pointer";
          t.addEventListener("click", function () { state.output = index; outputSelect.value = String(index); render(); });
        }
      });
      qa("circle.rv-node", svg).forEach(function (c) { hoverable(c, +c.getAttribute("data-layer"), +c.getAttribute("data-index")); });
    });
    outputSelect.addEventListener("change", function () {
      state.output = outputSelect.value === "readout" ? "readout" : +outputSelect.value; render();
    });
    weightsSelect.addEventListener("change", function () { state.weights = weightsSelect.value; render(); });
    headSwatches(state, render);
    render();
    q(".rv-controls").hidden = false;
  }

  var views = { head: headView, model: modelView, neuron: neuronView, flow: flowView };
  try {
    views[data.kind]();
    root.setAttribute("data-rv-ready", "1");
  } catch (error) {
    root.setAttribute("data-rv-error", String(error));
    if (window.console) { console.warn("relevance view " + id + ": static drawing kept (" + error + ")"); }
  }
}
