// Text a person cannot read whole on the page: labels and numbers cut with an ellipsis, and
// figure titles, subtitles, axis titles, legends or annotations drawn past the figure's edges.
// Returns a list of {kind, text, ...}; tests/test_browser_layout.py asserts it is empty.
() => {
  const out = [];
  const vis = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  // text cut with an ellipsis (metrics, button labels, widget labels): a clone's natural width vs the box
  for (const el of document.querySelectorAll('.stMarkdownEllipsis, [data-testid="stMetricValue"], button p')) {
    if (!vis(el) || !el.innerText) continue;
    const clone = el.cloneNode(true);
    clone.style.cssText = "position:absolute; visibility:hidden; width:max-content; max-width:none; white-space:nowrap; overflow:visible";
    el.parentElement.appendChild(clone);
    const natural = clone.getBoundingClientRect().width;
    clone.remove();
    const style = getComputedStyle(el);
    if (natural > el.getBoundingClientRect().width + 0.1 && (style.textOverflow === "ellipsis" || style.overflow === "hidden") && style.whiteSpace === "nowrap")
      out.push({kind: "text cut", text: el.innerText.slice(0, 60), natural: Math.round(natural), box: el.clientWidth});
  }
  for (const svg of document.querySelectorAll('[data-testid="stPlotlyChart"] svg.main-svg')) {
    const box = svg.getBoundingClientRect();
    if (box.width === 0) continue;
    for (const t of svg.querySelectorAll('.gtitle, .g-gtitle text, .annotation-text, .legendtext, .g-xtitle text, .g-ytitle text')) {
      const r = t.getBoundingClientRect();
      if (r.width === 0) continue;
      if (r.right > box.right + 2 || r.left < box.left - 2 || r.top < box.top - 2 || r.bottom > box.bottom + 2)
        out.push({kind: "figure text outside", text: (t.textContent || "").slice(0, 60), r: [Math.round(r.left - box.left), Math.round(r.right - box.left)], w: Math.round(box.width)});
    }
  }
  return out;
};
