// A small step plot on a canvas: dose (left axis, with the limit lines) and rate (right
// axis) over the last hours. No library: the page must work with no internet.
"use strict";
function drawPlot(canvas, series, limits, unit) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 56, R = 56, T = 12, B = 28;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px sans-serif";
  const pts = (series && series.points) || [];
  const hours = (series && series.hours) || 6;
  const x = (t) => L + (W - L - R) * (t + hours) / hours;
  let doseMax = 0, rateMax = 0;
  for (const p of pts) { rateMax = Math.max(rateMax, p[1] || 0); doseMax = Math.max(doseMax, p[2] || 0); }
  if (limits) { doseMax = Math.max(doseMax, limits.hard_max || 0); }
  doseMax = doseMax > 0 ? doseMax * 1.1 : 1; rateMax = rateMax > 0 ? rateMax * 1.1 : 1;
  const yd = (v) => H - B - (H - T - B) * v / doseMax;
  const yr = (v) => H - B - (H - T - B) * v / rateMax;
  ctx.strokeStyle = "#333"; ctx.fillStyle = "#888"; ctx.lineWidth = 1;
  for (let h = 0; h <= hours; h += 1) {
    const px = x(-h); ctx.beginPath(); ctx.moveTo(px, T); ctx.lineTo(px, H - B); ctx.stroke();
    ctx.fillText(h === 0 ? "now" : "-" + h + " h", px - 12, H - 8);
  }
  ctx.fillText(unit || "dose", 4, T + 8); ctx.fillText("mL/h", W - R + 6, T + 8);
  ctx.fillText(doseMax.toPrecision(3), 4, T + 24); ctx.fillText(rateMax.toPrecision(3), W - R + 6, T + 24);
  const line = (y, colour, dash) => {
    ctx.strokeStyle = colour; ctx.setLineDash(dash); ctx.beginPath();
    ctx.moveTo(L, y); ctx.lineTo(W - R, y); ctx.stroke(); ctx.setLineDash([]);
  };
  if (limits) {
    if (limits.hard_max != null) line(yd(limits.hard_max), "#d40000", []);
    if (limits.soft_max != null) line(yd(limits.soft_max), "#f2c200", [6, 4]);
    if (limits.soft_min != null && limits.soft_min > 0) line(yd(limits.soft_min), "#f2c200", [2, 4]);
  }
  const steps = (idx, y, colour, width) => {
    if (!pts.length) return;
    ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.beginPath();
    let first = true, prev = null;
    for (const p of pts) {
      if (p[idx] == null) { first = true; continue; }
      const px = x(p[0]), py = y(p[idx]);
      if (first) { ctx.moveTo(px, py); first = false; } else { ctx.lineTo(px, prev); ctx.lineTo(px, py); }
      prev = py;
    }
    ctx.stroke(); ctx.lineWidth = 1;
  };
  steps(1, yr, "#bbb", 1.5);
  steps(2, yd, "#6cf", 2.5);
}
