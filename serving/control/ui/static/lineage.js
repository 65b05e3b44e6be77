// Draws /ui/w/<workspace>/lineage.json with cytoscape.js: a left-to-right layered layout by
// depth from the roots (computed here, so no layout extension is needed), click to open a page.
(function () {
  var box = document.getElementById("lineage");
  if (!box) return;
  var colours = {
    topic: "#8c6d1f", file: "#8c6d1f", stream_source: "#2f6f9f", batch_source: "#2f6f9f",
    request_source: "#2f6f9f", stream_feature_view: "#3d8b3d", batch_feature_view: "#3d8b3d",
    realtime_feature_view: "#3d8b3d", feature_table: "#3d8b3d", feature_view: "#3d8b3d",
    feature_service: "#8b3d8b", store: "#555555"
  };
  fetch(box.dataset.src, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("lineage: HTTP " + r.status); return r.json(); })
    .then(function (graph) {
      var depth = {}, incoming = {};
      graph.nodes.forEach(function (n) { incoming[n.id] = []; });
      graph.edges.forEach(function (e) { (incoming[e.target] = incoming[e.target] || []).push(e.source); });
      function level(id, seen) {
        if (depth[id] !== undefined) return depth[id];
        if (seen[id]) return 0;
        seen[id] = true;
        var d = 0;
        (incoming[id] || []).forEach(function (s) { d = Math.max(d, level(s, seen) + 1); });
        return (depth[id] = d);
      }
      var rows = {};
      var elements = graph.nodes.map(function (n) {
        var d = level(n.id, {});
        rows[d] = (rows[d] || 0) + 1;
        return { data: { id: n.id, label: n.label, kind: n.kind, page: n.page || "" },
                 position: { x: d * 260, y: rows[d] * 60 } };
      }).concat(graph.edges.map(function (e, i) {
        return { data: { id: "e" + i, source: e.source, target: e.target } };
      }));
      var cy = cytoscape({
        container: box, elements: elements, layout: { name: "preset" }, wheelSensitivity: 0.3,
        style: [
          { selector: "node", style: { "label": "data(label)", "font-size": 11, "text-valign": "center",
            "text-halign": "right", "text-margin-x": 6, "width": 14, "height": 14,
            "background-color": function (n) { return colours[n.data("kind")] || "#999"; } } },
          { selector: "node[page != '']", style: { "shape": "round-rectangle" } },
          { selector: "edge", style: { "width": 1, "curve-style": "bezier", "target-arrow-shape": "triangle",
            "line-color": "#bbb", "target-arrow-color": "#bbb" } },
          { selector: ".focus", style: { "border-width": 3, "border-color": "#d33" } }
        ]
      });
      cy.on("tap", "node", function (evt) {
        var page = evt.target.data("page");
        if (page) location.href = box.dataset.base + encodeURIComponent(page);
      });
      var focus = decodeURIComponent(location.hash.slice(1));
      if (focus) {
        var hit = cy.nodes().filter(function (n) { return n.data("page") === focus; });
        if (hit.length) { hit.addClass("focus"); cy.center(hit); }
      }
      window.featurebusLineage = cy;  // the browser tests follow edges through it
    })
    .catch(function (err) { box.textContent = "The lineage could not be loaded: " + err.message; box.className = "down"; });
})();
