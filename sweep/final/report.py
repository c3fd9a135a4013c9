"""The final-fit report: `report.md` (figures beside it as PNG files) and `report.html`, one
self-contained page (figures embedded as base64 PNG), written from the same tables.

Per fit: the search's value beside the test split's figures under `cloudseg evaluate`'s
protocol (per-scene mean and pooled, at 12/255 and at the bundle's threshold); for the winner
the per-scene table beside Cloud-Net's published figures where the scene ids match, per-scene
Jaccard bars and the worst scenes as overlays; with 3+ fits, Spearman's rho between the
search's values and the test scores.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.final.figures import jaccard_bars, overlay
from sweep.final.scoring import CHOSEN_ON, FitScore

WORST = 3  # overlays of the winner's worst test scenes


@dataclass(frozen=True)
class Section:
    """A heading, a paragraph, a table (header, rows) or a figure (name, PNG bytes)."""

    heading: str = ""
    text: str = ""
    table: tuple[tuple[str, ...], tuple[tuple[str, ...], ...]] | None = None
    figure: tuple[str, bytes] | None = None


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _fits_table(scores: list[FitScore]) -> Section:
    head = ("rank", "search trial", "final-fit trial", "search's value",
            "test J 12/255 (per-scene mean)", "test J 12/255 (pooled)", "bundle threshold",
            "test J at it (per-scene mean)")
    rows = tuple((str(s.rank), str(s.origin), str(s.trial),
                  f"{s.search_value:.4f} ("
                  + (f"mean of {s.search_runs} confirmation runs)" if s.search_runs
                     else "its search trial)"), _pct(s.official.mean["iou"]),
                  _pct(s.official.pooled.iou), f"{s.at_bundle.threshold:.6f}",
                  _pct(s.at_bundle.mean["iou"])) for s in scores)
    return Section("Final fits on the test split", "Jaccard in percent; per-scene mean is the "
                   "38-Cloud protocol (papers report it), pooled sums the counts first.",
                   (head, rows))


def _scene_table(score: FitScore) -> Section:
    ref = score.cloudnet
    head = ("scene", "J 12/255", f"J {score.at_bundle.threshold:.4f}", "P 12/255", "R 12/255",
            *(("Cloud-Net J", "ours - Cloud-Net") if ref is not None else ()))
    at = {s.scene: s.metrics for s in score.at_bundle.scenes}
    rows = []
    for s in score.official.scenes:
        m = s.metrics
        extra: tuple[str, ...] = ()
        if ref is not None:
            theirs = ref.reference.scenes.get(s.scene)
            extra = ("-", "-") if theirs is None else (_pct(theirs["iou"]),
                                                       f"{100 * (m.iou - theirs['iou']):+.2f}")
        rows.append((s.scene, _pct(m.iou), _pct(at[s.scene].iou), _pct(m.precision),
                     _pct(m.recall), *extra))
    mean, bmean = score.official.mean, score.at_bundle.mean
    extra = ()
    text = ""
    if ref is not None:
        ours, theirs = ref.means()
        extra = (_pct(theirs["iou"]), f"{100 * (ours['iou'] - theirs['iou']):+.2f}")
        text = (f"Cloud-Net: {ref.reference.label}, published per-scene results at 12/255 "
                f"(shipped with cloudseg); {len(ref.scenes)} of the test scenes are in its "
                f"table; over those ours {_pct(ours['iou'])} vs Cloud-Net {_pct(theirs['iou'])}.")
    rows.append((f"mean over {len(score.official.scenes)} scenes", _pct(mean["iou"]),
                 _pct(bmean["iou"]), _pct(mean["precision"]), _pct(mean["recall"]), *extra))
    return Section(f"Winner per scene (final fit of search trial {score.origin})", text,
                   (head, tuple(rows)))


def sections(study: str, scores: list[FitScore], correlation: dict[str, Any] | None,
             gt_dir: Path, epochs: int) -> list[Section]:
    """The report, in order, shared by the Markdown and the HTML."""
    win = scores[0]
    out = [Section(f"Final fits of study {study}",
                   f"{len(scores)} config(s) trained again on every training scene's patches "
                   f"for {epochs} epochs; {CHOSEN_ON}. Scored with `cloudseg evaluate`'s "
                   f"protocol ({win.official.scored})."),
           _fits_table(scores)]
    if correlation is not None:
        out.append(Section("How well the search ranked", (
            f"Spearman's rho between the search's values and the final fits' test Jaccard "
            f"(12/255, per-scene mean) over {correlation['n']} configs: "
            f"{correlation['spearman_rho']:.3f} (p = {correlation['p_value']:.3g}).")))
    out += [_scene_table(win), Section(figure=("jaccard_per_scene.png", jaccard_bars(win)))]
    worst = sorted(win.official.scenes, key=lambda s: s.metrics.iou)[:WORST]
    out.append(Section(f"Worst {len(worst)} test scenes of the winner", "TP white, FP red, "
                       f"FN blue, at the bundle's threshold {win.at_bundle.threshold:.4f}."))
    for s in worst:
        png = overlay(win.predictions / f"{s.scene}_prob.tif",
                      gt_dir / "Entire_scene_gts" / f"edited_corrected_gts_{s.scene}.TIF",
                      win.at_bundle.threshold, f"{s.scene}: J {_pct(s.metrics.iou)} at 12/255")
        out.append(Section(figure=(f"overlay_{s.scene}.png", png)))
    return out


def to_markdown(parts: list[Section], folder: Path) -> str:
    """Markdown, each figure written as a PNG file into `folder`."""
    lines: list[str] = []
    for p in parts:
        if p.heading:
            lines += [f"## {p.heading}", ""]
        if p.text:
            lines += [p.text, ""]
        if p.table is not None:
            head, rows = p.table
            lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        if p.figure is not None:
            name, png = p.figure
            (folder / name).write_bytes(png)
            lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def to_html(parts: list[Section], title: str) -> str:
    """One self-contained HTML page: tables and figures inline (base64 PNG)."""
    body = []
    for p in parts:
        if p.heading:
            body.append(f"<h2>{html.escape(p.heading)}</h2>")
        if p.text:
            body.append(f"<p>{html.escape(p.text)}</p>")
        if p.table is not None:
            head, rows = p.table
            cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
            trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                          for r in rows)
            body.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{trs}</tbody></table>")
        if p.figure is not None:
            name, png = p.figure
            data = base64.b64encode(png).decode()
            body.append(f'<figure><img alt="{html.escape(name)}" '
                        f'src="data:image/png;base64,{data}"></figure>')
    style = ("body{font-family:sans-serif;margin:2em;max-width:1150px}table{border-collapse:"
             "collapse;font-size:13px}td,th{border:1px solid #bbb;padding:3px 6px;text-align:"
             "right}td:first-child{text-align:left}figure{display:inline-block;margin:6px}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(body) + "</body></html>\n")


def write_report(folder: Path, study: str, scores: list[FitScore],
                 correlation: dict[str, Any] | None, gt_dir: Path, epochs: int
                 ) -> tuple[Path, Path]:
    """report.md (+ its PNGs) and report.html in `folder`; returns their paths."""
    parts = sections(study, scores, correlation, gt_dir, epochs)
    folder.mkdir(parents=True, exist_ok=True)
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(to_markdown(parts, folder))
    page.write_text(to_html(parts, f"cloudsweep final fits: {study}"))
    return md, page
