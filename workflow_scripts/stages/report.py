"""The run's report: one standalone HTML page (figures inlined), linked from the README.

It opens with the answer: per embedder and rendering, the best probe's top-1 with its
interval, the report's recipe, retrieval MAP raw and with the metric head and, where
probes were trained on other renderings, the same probe across them; and, when a split
failed its preconditions, why nothing ran there. Then a list of contents, the corpus,
compact tables of every probe (their settings and counts folded away; every column is
in summary.tsv), the best probe's confusions and curve, retrieval on held-out pieces,
embedding geometry, the corpus audit and the published report's figures beside ours.
Every table fits the page: nothing is wider than a 1,400-pixel window.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.identification.report_section import identification_section
from workflow_scripts.plumbing.io_utils import write_text_atomic
from workflow_scripts.plumbing.roles import CLOSED_SET_SPLITS
from workflow_scripts.probes.preconditions import RAN, run_message
from workflow_scripts.stages.summary import IDENTIFICATION_SPLIT

PUBLISHED = {
    "top1": 0.344,
    "top5": 0.564,
    "train_top1": 0.998,
    "train_snippets": 2487,
    "test_snippets": 521,
    "top1_l2": 0.044,
}
# The published report's recipe, quoted beside the best probe in the answer.
RECIPE_PROBE = "linear_adam"

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } .number { text-align: right; } td.number { white-space: nowrap; }
.long { overflow-wrap: anywhere; }
#answer table { font-size: 0.95em; } #answer td { padding: 4px 9px; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.4em 0; }
.note { color: #555; font-size: 0.9em; }
.leaky { color: #a00; }
.refused { border-left: 4px solid #c60; background: #fff6ec; padding: 0.3em 1em; margin: 0.8em 0; }
nav ol { columns: 2; margin: 0.4em 0; } details { margin: 0.8em 0; } summary { cursor: pointer; color: #245; }
"""


def image_tag(path: str | Path, alt: str) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


LONG_TOKEN = 24


def table_html(frame: pd.DataFrame, float_format: str = "{:.4f}") -> str:
    """An HTML table: numbers right-aligned and formatted, text left-aligned and free to wrap."""
    numeric = [
        pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
        for column in frame.columns
    ]

    def cell(value: Any, is_number: bool, tag: str = "td") -> str:
        if isinstance(value, float | np.floating):
            text = "" if pd.isna(value) else float_format.format(value)
        elif isinstance(value, list | tuple | np.ndarray):  # a setting that is a list: l2_grid, k_grid
            text = ", ".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
        elif isinstance(value, dict):
            text = json.dumps(value, sort_keys=True)
        else:
            text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
        # Only a cell with a long unbroken token (a sweep probe's name, a path) may break inside
        # words: allowing it everywhere lets the table squeeze short words apart.
        long_token = not is_number and any(len(token) > LONG_TOKEN for token in text.split())
        kind = " class=number" if is_number else " class=long" if long_token else ""
        return f"<{tag}{kind}>{html.escape(text)}</{tag}>"

    header = "".join(cell(column, is_number, "th") for column, is_number in zip(frame.columns, numeric))
    rows = "".join(
        "<tr>" + "".join(cell(value, is_number) for value, is_number in zip(row, numeric)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def interval(text: str) -> tuple[float, float]:
    """summary.tsv's "low-high" interval as two numbers."""
    low, high = str(text).split("-")
    return float(low), float(high)


def top1_text(row: Any) -> str:
    """Top-1 with its 95% interval, in percent: "21.2% [17.0, 25.3]"."""
    low, high = interval(row.top1_ci95)
    # No-break spaces: a figure and its interval stay on one line in a narrow column.
    return f"{percent(row.top1)}\u00a0[{100 * low:.1f},\u00a0{100 * high:.1f}]"


LEAKY_MARK = " [LEAKY: no overlap guard]"
INTERVALS_NOTE = (
    "95% intervals are percentile bootstraps over test pieces: every test snippet of a resampled piece "
    "goes in together (a cluster bootstrap), since the snippets of one piece are not independent."
)


def leaky_rows(summary: pd.DataFrame) -> pd.Series:
    """True for rows from a by-snippet split without the overlap guard (summary.tsv's leaky column)."""
    if "leaky" not in summary:
        return pd.Series(False, index=summary.index)
    return summary["leaky"].astype(str).str.lower().eq("true")


def ran_rows(summary: pd.DataFrame) -> pd.Series:
    """True for probes that ran (summary.tsv's status; rows from before the column all ran)."""
    if "status" not in summary:
        return pd.Series(True, index=summary.index)
    return summary["status"].fillna(RAN).eq(RAN)


def marked_probe_names(summary: pd.DataFrame) -> pd.Series:
    """Probe names, with leaky rows marked so that no table or figure shows them unlabelled."""
    return summary.probe.where(~leaky_rows(summary), summary.probe + LEAKY_MARK)


def leaky_warning(summary: pd.DataFrame) -> str:
    count = int(leaky_rows(summary).sum())
    if not count:
        return ""
    return (
        f"<p class='leaky'><strong>{count} row(s) are leaky</strong>: their by_snippet split was made with "
        "splits.overlap_guard: false, so test snippets share measures with training snippets of the same piece. They "
        "measure what the protocol adds, not what the embedding identifies; never quote them as accuracy.</p>"
    )


def within_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Closed-set rows trained and tested on one rendering (no transfer)."""
    return summary[summary.split.isin(CLOSED_SET_SPLITS) & (summary.train_variants == summary.test_variant)]


def best_row(rows: pd.DataFrame) -> Any | None:
    """The highest top-1 among rows that ran, sound rows first: a leaky row is only best when nothing else ran."""
    rows = rows[ran_rows(rows)]
    sound = rows[~leaky_rows(rows)]
    candidates = sound if len(sound) else rows
    if not len(candidates):
        return None
    return next(candidates.sort_values(["top1", "probe"], ascending=[False, True], kind="stable").itertuples())


def shown_name(row: Any) -> str:
    """A row's probe name, marked when it is leaky."""
    return row.probe + (LEAKY_MARK if str(row.leaky).lower() == "true" else "")


def retrieval_maps(paths: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(embedder, variant) -> MAP per representation, or why retrieval did not run."""
    maps = {}
    for path in paths:
        metrics = json.loads(Path(path).read_text())
        wildcards = metrics["provenance"]["wildcards"]
        key = (wildcards["embedder"], wildcards["variant"])
        if key in maps:  # one open-set split gives the headline; the section shows every one
            continue
        maps[key] = {
            "split": wildcards["split"],
            "reason": metrics.get("reason", ""),
            **{result["representation"]: result["map"] for result in metrics.get("results", [])},
        }
    return maps


def map_text(maps: dict[str, Any] | None) -> str:
    if not maps:
        return "no open-set split"
    if maps.get("reason"):
        return "not run"
    raw = f"{maps['raw']:.3f}"
    return f"{raw} → {maps['metric_head']:.3f}" if "metric_head" in maps else raw


def headline_table(summary: pd.DataFrame, maps: dict[tuple[str, str], dict[str, Any]]) -> pd.DataFrame:
    """One row per embedder and rendering: the best probe, the report's recipe, retrieval MAP."""
    rows = []
    # In the run's order: embedders and renderings as the config lists them.
    for (embedder, variant), group in within_rows(summary).groupby(["embedder", "variant"], sort=False):
        best = best_row(group)
        recipe = best_row(group[group.probe == RECIPE_PROBE])
        tested = best if best is not None else next(group.itertuples())
        test_set = f"{int(tested.test_snippets)} snippet(s) of {int(tested.classes)} piece(s)"
        if best is not None:
            test_set += f", chance {percent(1 / best.classes)}"
        rows.append(
            {
                "embedder": embedder,
                "rendering": variant,
                "test set": test_set,
                "best probe": shown_name(best) if best is not None else "none ran",
                "its top-1 [95% CI]": top1_text(best) if best is not None else "",
                f"report's recipe ({RECIPE_PROBE}) top-1": top1_text(recipe) if recipe is not None else "",
                "retrieval MAP, raw → metric head": map_text(maps.get((embedder, variant))),
            }
        )
    return pd.DataFrame(rows)


def transfer_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per embedder and transfer: the probe that is best within the test rendering, trained there and elsewhere."""
    ran = summary[ran_rows(summary)]
    across = ran[ran.split.isin(CLOSED_SET_SPLITS) & (ran.train_variants != ran.test_variant)]
    within = within_rows(ran)
    rows = []
    for (embedder, _), group in across.groupby(["embedder", "variant"], sort=False):
        tested_on = group.test_variant.iloc[0]
        home = within[(within.embedder == embedder) & (within.variant == tested_on)]
        best_home = best_row(home)
        probe = best_home.probe if best_home is not None and (group.probe == best_home.probe).any() else None
        chosen = best_row(group[group.probe == probe] if probe else group)
        home_row = best_row(home[home.probe == chosen.probe])
        rows.append(
            {
                "embedder": embedder,
                "trained on": group.train_variants.iloc[0],
                "tested on": tested_on,
                "probe": shown_name(chosen),
                "top-1 trained on the test rendering": top1_text(home_row) if home_row is not None else "",
                "top-1 trained on the other rendering(s)": top1_text(chosen),
            }
        )
    return pd.DataFrame(rows)


def refusal_notices(preconditions: list[str], uses: dict[str, Any]) -> str:
    """The preconditions message for every variant where something could not run, for the
    uses this run makes of its data (``uses``: validation_probes, metric_head)."""
    notices = []
    for path in preconditions:
        record = json.loads(Path(path).read_text())
        message = run_message(record, list(uses.get("validation_probes", [])), bool(uses.get("metric_head", True)))
        if message:
            notices.append(f"<p>{html.escape(message)}</p>")
    if not notices:
        return ""
    return "<div class='refused'><p><strong>Not everything could run.</strong></p>" + "".join(notices) + "</div>"


def answer_section(summary: pd.DataFrame, maps: dict, preconditions: list[str], uses: dict[str, Any]) -> str:
    headline = headline_table(summary, maps)
    transfers = transfer_table(summary)
    test_set = ""
    if len(headline) and headline["test set"].nunique() == 1:  # said once rather than on every row
        test_set = f" The test set: {headline['test set'].iloc[0]}."
        headline = headline.drop(columns="test set")
    missing = len(summary) - int(ran_rows(summary).sum())
    not_ran = f" {missing} of {len(summary)} probe runs did not run (see above)." if missing else ""
    parts = [
        "<section id='answer'><h2>The answer</h2>",
        refusal_notices(preconditions, uses),
        leaky_warning(summary),
        "<p>Which piece does a passage never heard come from? For each embedder and rendering: the top-1 of the best "
        f"of the {summary.probe.nunique()} probes on the by_snippet test snippets (their measures are kept out of "
        "training), chosen on these test figures, so read it with its interval; the same for the published report's "
        "recipe; and retrieval MAP among held-out pieces (by_piece), raw and after the learned metric head."
        f"{test_set}{not_ran}</p>",
        table_html(headline) if len(headline) else "<p>No closed-set split configured.</p>",
    ]
    if len(transfers):
        parts += [
            "<h3>Across renderings</h3><p>The same test snippets, scored by the probe trained on their own rendering "
            "and by the same probe trained only on other renderings: the drop is how much the embedding "
            "identifies the sound rather than the piece.</p>",
            table_html(transfers),
        ]
    parts.append(f"<p class='note'>{INTERVALS_NOTE}</p></section>")
    return "".join(parts)


def comparison_plot(summary: pd.DataFrame, destination) -> None:
    from workflow_scripts.probes.plots import _save, plot_note, plt

    rows = summary[ran_rows(summary)]
    if not len(rows):
        plot_note(destination, "top-1 and top-5 per setting", "No probe ran: the report says why.")
        return
    rows = rows.sort_values(["embedder", "top1"], ascending=[True, False]).reset_index(drop=True)
    bounds = rows.top1_ci95.str.split("-", expand=True).astype(float)
    probes = marked_probe_names(rows)
    labels = [f"{row.embedder}/{row.variant}/{row.split}/{probe}" for row, probe in zip(rows.itertuples(), probes)]
    figure, axis = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.5))
    positions = np.arange(len(rows))
    axis.barh(
        positions,
        rows.top1,
        xerr=[rows.top1 - bounds[0], bounds[1] - rows.top1],
        color="#4c72b0",
        alpha=0.85,
        capsize=3,
    )
    axis.scatter(rows.top5, positions, marker="|", s=160, color="#dd8452", label="top-5", zorder=3)
    axis.axvline(PUBLISHED["top1"], color="grey", linestyle=":", label="published top-1 (34.4%)")
    axis.set_yticks(positions, labels, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("test top-1 (bars, 95% CI) and top-5 (marks)")
    axis.legend(fontsize=8, loc="lower right")
    _save(figure, destination)


def probe_settings(metric_paths: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every probe's full settings (from its metrics.json): a table of those that differ
    between probes, and the ones all probes share."""
    settings = {}
    for path in metric_paths:
        metrics = json.loads(Path(path).read_text())
        settings.setdefault(metrics["provenance"]["wildcards"]["probe"], metrics["probe"])
    table = pd.DataFrame([{"probe": name, **values} for name, values in settings.items()])
    shared = {
        column: table[column].iloc[0]
        for column in table.columns
        if column != "probe" and table[column].astype(str).nunique() == 1 and len(table) > 1
    }
    table = table.drop(columns=list(shared))
    return table.rename(columns=lambda column: column.replace("_", " ")), shared


def probes_section(summary: pd.DataFrame, metric_paths: list[str], comparison_png: Path) -> str:
    """Every probe's figures in one compact table; settings, counts and the bar chart folded away."""
    ran = summary[ran_rows(summary)].assign(probe=lambda frame: marked_probe_names(frame))
    # Embedders and renderings in the run's order, each block's probes from the highest top-1 down.
    block = ran.groupby(["embedder", "variant"], sort=False).ngroup()
    ran = ran.assign(block=block).sort_values(["block", "top1"], ascending=[True, False], kind="stable")
    figures = pd.DataFrame(
        {
            "embedder": ran.embedder,
            "variant": ran.variant,
            **({"split": ran.split} if ran.split.nunique() > 1 else {}),
            "probe": ran.probe,
            "top-1 [95% CI]": [top1_text(row) for row in ran.itertuples()],
            "top-5": ran.top5,
            "same-music top-1": ran.top1_music_group,
            "same-tune top-1": ran.top1_tune_group,
            "train top-1": ran.train_top1,
        }
    )
    not_run = summary[~ran_rows(summary)]
    settings, shared = probe_settings(metric_paths)
    counts = summary.drop_duplicates(["variant", "split"])[
        ["variant", "split", "train_snippets", "validation_snippets", "test_snippets", "dropped_overlap_snippets"]
    ].rename(columns=lambda column: column.replace("_snippets", "").replace("_", " "))
    per_class = ran[
        ["embedder", "variant", "probe", "per_class_mean", "per_class_median", "classes_at_0", "classes_at_100"]
    ].rename(
        columns={
            "per_class_mean": "per-piece mean",
            "per_class_median": "median",
            "classes_at_0": "pieces at 0%",
            "classes_at_100": "at 100%",
        }
    )
    return (
        "<section id='probes'><h2>Comparison of probes</h2>"
        f"<p class='note'>Test top-1 and top-5 of every probe, highest first; 'same music' and 'same tune' count a "
        f"confusion inside an audit group as correct. {INTERVALS_NOTE}</p>"
        + (table_html(figures, "{:.1%}") if len(figures) else "<p>No probe ran (the answer above says why).</p>")
        + (
            f"<p class='note'>{len(not_run)} probe run(s) did not run: their split failed the preconditions "
            "(the answer above says which and why).</p>"
            if len(not_run)
            else ""
        )
        + "<details><summary>Settings and snippet counts of every probe</summary>"
        + table_html(settings, "{:g}")
        + (
            "<p class='note'>Shared by every probe: "
            + html.escape(", ".join(f"{name} {value}" for name, value in shared.items()))
            + ".</p>"
            if shared
            else ""
        )
        + "<p class='note'>Snippets per role (validation is carved from training for early stopping; the "
        "fixed recipes train on both).</p>"
        + table_html(counts)
        + "<p class='note'>Accuracy per test piece: mean and median over pieces, pieces never and always "
        "recognised.</p>"
        + table_html(per_class, "{:.3f}")
        + "<p class='note'>Every column of every probe run: <a href='../summary.tsv'>results/summary.tsv</a>.</p>"
        + "</details>"
        + "<details><summary>Bar chart of every probe's top-1 and top-5</summary>"
        + image_tag(comparison_png, "top-1 and top-5 of every probe")
        + "</details></section>"
    )


def probe_folders(metric_paths: list[str]) -> dict[tuple[str, ...], Path]:
    folders = {}
    for path in metric_paths:
        wildcards = json.loads(Path(path).read_text())["provenance"]["wildcards"]
        folders[tuple(wildcards[key] for key in ("embedder", "variant", "split", "probe"))] = Path(path).parent
    return folders


def fit_text(row) -> str:
    """What fitted a one-shot probe, for the note that stands where its curve would."""
    kind = getattr(row, "kind", None)
    if not isinstance(kind, str) or kind == "neural":  # summaries from before kinds hold neural probes only
        return f"{row.optimizer} fit"
    return f"{kind} fit"


def selected_text(metrics: dict) -> str:
    chosen = metrics.get("selected") or {}
    return "".join(f"; {name} {value:g} chosen on validation" for name, value in chosen.items())


def best_probe_section(summary: pd.DataFrame, folders: dict[tuple[str, ...], Path], output_folder: Path) -> str:
    from workflow_scripts.probes.plots import has_curve, plot_most_confused

    within = within_rows(summary)
    best = best_row(within if ran_rows(within).any() else summary)
    if best is None:
        return "<section id='best'><h2>Best probe</h2><p>No probe ran.</p></section>"
    probe = best.probe
    folder = folders[(best.embedder, best.variant, best.split, probe)]
    confusion = pd.read_csv(folder / "confusion.tsv", sep="\t", index_col=0)
    confused_png = output_folder / "best_most_confused.png"
    plot_most_confused(confusion.to_numpy(), list(confusion.columns), confused_png, f"{best.embedder} / {probe}")
    metrics = json.loads((folder / "metrics.json").read_text())
    attractors = pd.DataFrame(metrics.get("attractors", []))
    curve = pd.read_csv(folder / "curve.tsv", sep="\t")
    return (
        f"<section id='best'><h2>Best probe: {html.escape(best.embedder)} / {html.escape(best.variant)} / "
        f"{html.escape(shown_name(best))}</h2>"
        f"<p>Top-1 {top1_text(best)} (95% CI, resampling test pieces), top-5 {percent(best.top5)}; "
        f"counted at the same-music group level {percent(best.top1_music_group)}, at the same-tune group level "
        f"{percent(best.top1_tune_group)}.</p>"
        + image_tag(confused_png, "most-confused pieces")
        + image_tag(folder / "per_class.png", "per-piece accuracy")
        + (
            image_tag(folder / "curve.png", "learning curve")
            if has_curve(curve) and (folder / "curve.png").is_file()
            else f"<p class='note'>No training curve: a {html.escape(fit_text(best))} gives one result, "
            f"after {int(curve.step.iloc[-1])} steps{selected_text(metrics)}.</p>"
        )
        + "<h3>Attractors: pieces that absorb the most wrong predictions</h3>"
        + (table_html(attractors) if len(attractors) else "<p>none</p>")
        + "</section>"
    )


def same_music_columns(same_music: dict[str, Any] | None) -> dict[str, Any]:
    """Retrieval figures when a snippet of the same music (another file of the chorale) also counts as relevant."""
    if not same_music:
        return {}
    return {"MAP, same music": same_music["map"], "HR@1, same music": same_music["hr@1"]}


# The preconditions message is at the top of the page; a section that did not run points there.
NOT_RUN_NOTE = "<p class='refused'>Not run: the split fails its preconditions (the answer above says why).</p>"
RETRIEVAL_NOTE = (
    "Each held-out snippet queries all other held-out snippets by cosine similarity; relevant = same piece. raw: "
    "the embeddings; standardized: training-piece statistics; lda: a projection learned on training pieces only; "
    "metric_head: a projection trained with a supervised contrastive loss on training pieces, its epoch chosen on "
    "validation pieces. The AUC says how well cosine distance separates same-piece from different-piece pairs among "
    "the held-out snippets: the geometry before and after learning. Tied similarities share the last rank of their "
    "block, for MAP and the first relevant rank alike. The strict figures count only the query's own piece as "
    "relevant; the 'same music' ones also count pieces the audit finds to be the same music. 95% intervals resample "
    "held-out pieces, all queries of a piece together (a cluster bootstrap)."
)


def retrieval_section(paths: list[str]) -> str:
    head = "<section id='retrieval'><h2>Retrieval on held-out pieces</h2>"
    if not paths:
        return head + "<p>No open-set split configured (add by_piece to splits.names).</p></section>"
    parts = [head, f"<p class='note'>{RETRIEVAL_NOTE}</p>"]
    for path in paths:
        metrics = json.loads(Path(path).read_text())
        wildcards = metrics["provenance"]["wildcards"]
        where = f"{wildcards['embedder']} / {wildcards['variant']} / {wildcards['split']}"
        parts.append(f"<h3>{html.escape(where)}</h3>")
        if metrics.get("reason"):
            parts.append(NOT_RUN_NOTE)
            continue
        rows = [
            {
                "representation": result["representation"],
                "MAP": result["map"],
                "MAP 95% CI": "{:.3f}-{:.3f}".format(*result["map_ci95"]),
                "MR1": result["mr1"],
                "MRR": result["mrr"],
                "HR@1": result["hr@1"],
                "HR@5": result["hr@5"],
                "HR@10": result["hr@10"],
                "AUC same piece": result.get("auc_cosine", float("nan")),
                **same_music_columns(result.get("same_music")),
            }
            for result in metrics["results"]
        ]
        first = metrics["results"][0] if metrics["results"] else {}
        parts.append(
            f"<p>{metrics['held_out_pieces']} held-out pieces, {first.get('queries', 0)} scorable queries.</p>"
            + table_html(pd.DataFrame(rows), "{:.3f}")
        )
        head_facts = metrics.get("metric_head")
        if head_facts:
            validation = (
                f" (validation MAP {head_facts['validation_map']:.3f})"
                if head_facts.get("validation_map") is not None
                else ""
            )
            parts.append(
                f"<p class='note'>Metric head trained on {head_facts['training_pieces']} pieces, epoch "
                f"{head_facts['selected_epoch']} of {head_facts['epochs_run']} chosen on "
                f"{html.escape(str(head_facts['selected_on']))}{validation}.</p>"
            )
        figure = Path(path).parent / "distances.png"
        if figure.exists():
            parts.append(image_tag(figure, f"held-out distances {where}"))
    return "".join(parts) + "</section>"


def variants_section(summary: pd.DataFrame) -> str:
    """Top-1 on each test variant: trained on it (within) beside trained on other renderings."""
    rows = summary[(summary.split == "by_snippet") & ran_rows(summary)].copy()
    if rows.test_variant.nunique() < 2 and (rows.train_variants == rows.test_variant).all():
        return ""  # one rendering, no transfer: nothing to compare
    rows["trained on"] = rows.train_variants.where(
        rows.train_variants != rows.test_variant, rows.test_variant + " (within)"
    )
    rows["probe"] = marked_probe_names(rows)
    rows["top-1 [95% CI]"] = [top1_text(row) for row in rows.itertuples()]
    rows["top-5"] = rows.top5
    rows["tested on"] = rows.test_variant
    table = rows[["embedder", "probe", "tested on", "trained on", "top-1 [95% CI]", "top-5", "test_snippets"]]
    table = table.sort_values(["embedder", "probe", "tested on", "trained on"], kind="stable")
    return (
        "<section id='variants'><h2>Across rendering variants</h2><p class='note'>by_snippet on each test variant: "
        "the same test snippets, scored by a probe trained on the test variant's own rendering (within) or only on "
        "other renderings (a transfer; several training variants is augmentation). A drop from within to across is "
        "how much the embedding identifies the sound rather than the piece. The answer above gives it for the best "
        "probe.</p><details><summary>Every probe on every test rendering</summary>"
        + table_html(table.rename(columns={"test_snippets": "test snippets"}), "{:.1%}")
        + "</details></section>"
    )


GEOMETRY_COLUMNS = {
    "layer": "layer",
    "auc_cosine": "AUC, cosine",
    "auc_euclidean": "AUC, Euclidean",
    "nn_accuracy_cosine": "1-NN accuracy, cosine",
    "nn_accuracy_euclidean": "1-NN accuracy, Euclidean",
    "mean_same_cosine": "mean cosine distance, same piece",
    "mean_different_cosine": "mean cosine distance, different pieces",
}


def geometry_section(paths: list[str]) -> str:
    parts = ["<section id='geometry'><h2>Embedding geometry</h2>"]
    for path in paths:
        folder = Path(path).parent
        summary = json.loads(Path(path).read_text())
        wildcards = summary["provenance"]["wildcards"]
        parts.append(f"<h3>{html.escape(wildcards['embedder'])} / {html.escape(wildcards['variant'])}</h3>")
        if summary.get("reason"):
            parts.append(NOT_RUN_NOTE)
            continue
        per_layer = pd.read_csv(folder / "per_layer.tsv", sep="\t")
        parts.append(
            f"<p>Layer {summary['layer']}: ROC AUC of 'same piece' from cosine distance {summary['auc_cosine']:.3f}, "
            f"from Euclidean distance {summary['auc_euclidean']:.3f}; leave-one-out 1-NN piece accuracy "
            f"{percent(summary['nn_accuracy_cosine'])} (cosine).</p>"
            + table_html(
                per_layer[list(GEOMETRY_COLUMNS)].rename(columns=GEOMETRY_COLUMNS),
                "{:.3f}",
            )
            + image_tag(folder / "distances.png", "distance histograms")
            + (image_tag(folder / "layers.png", "per-layer geometry") if len(per_layer) > 1 else "")
            + image_tag(folder / "tsne.png", "t-SNE")
        )
    return "".join(parts) + "</section>"


def audit_section(summary_path: str, groups_path: str) -> str:
    summary = json.loads(Path(summary_path).read_text())
    groups = pd.read_csv(groups_path, sep="\t", keep_default_na=False)
    music = groups[groups.music_group != ""].groupby("music_group").piece_id.apply(", ".join).reset_index()
    tunes = groups[groups.tune_group != ""].groupby("tune_group").piece_id.apply(", ".join).reset_index()
    return (
        "<section id='audit'><h2>Corpus audit</h2>"
        f"<p>{summary['same_music_groups']} groups of pieces that are the same music "
        f"({summary['pieces_in_same_music_groups']} pieces) and {summary['same_tune_groups']} groups that share a "
        f"chorale tune ({summary['pieces_in_same_tune_groups']} pieces). by_piece holds each tune group out whole; "
        "group-level accuracy counts a confusion inside a group as correct.</p>"
        + "<h3>Same music</h3>"
        + (table_html(music) if len(music) else "<p>none</p>")
        + "<h3>Same tune</h3>"
        + (table_html(tunes) if len(tunes) else "<p>none</p>")
        + "</section>"
    )


def published_section(summary: pd.DataFrame) -> str:
    baseline = summary[(summary.probe == RECIPE_PROBE) & (summary.split == "by_snippet") & ran_rows(summary)]
    baseline = baseline.assign(probe=marked_probe_names(baseline))
    rows = [
        {
            "source": "published report (MERT, linear, Adam)",
            "train snippets": PUBLISHED["train_snippets"],
            "test snippets": PUBLISHED["test_snippets"],
            "top-1": PUBLISHED["top1"],
            "top-5": PUBLISHED["top5"],
            "train top-1": PUBLISHED["train_top1"],
        }
    ]
    for row in baseline.itertuples():
        rows.append(
            {
                "source": f"this run: {row.embedder}/{row.variant}, {row.probe}",
                "train snippets": row.train_snippets + row.validation_snippets,
                "test snippets": row.test_snippets,
                "top-1": row.top1,
                "top-5": row.top5,
                "train top-1": row.train_top1,
            }
        )
    return (
        "<section id='published'><h2>The published figures beside ours</h2>"
        f"<p>The report: {percent(PUBLISHED['top1'])} top-1, {percent(PUBLISHED['top5'])} top-5, "
        f"{percent(PUBLISHED['train_top1'])} train top-1 on {PUBLISHED['train_snippets']} / {PUBLISHED['test_snippets']} "
        "train / test snippets with MERT and a linear probe.</p>"
        + table_html(pd.DataFrame(rows), "{:.3f}")
        + "<p class='note'>What differs: the report's 2,487 + 521 = 3,008 snippets from 430 pieces are exactly what "
        "4-measure windows every 2 measures give on music21's 410 chorales plus its 20 Roman-numeral analyses "
        "(scripts/reconcile_counts.py). Split by snippet, overlapping windows put the measures of a test snippet in "
        "training and inflate accuracy; our by_snippet split drops every training snippet that shares a measure with "
        "a test snippet (splits.overlap_guard). The corpus also holds variant files and re-harmonisations of one tune "
        "(see the audit); confusions between them count as errors in top-1 and as correct in the group-level figures. "
        "The published L2-normalised top-1 was 4.4%. configs/report.yaml "
        "reproduces the report's protocol (README: the report's protocol, taken apart).</p></section>"
    )


def corpus_section(catalog_paths: list[str]) -> str:
    parts = ["<section id='corpus'><h2>Corpus</h2>"]
    for path in catalog_paths:
        catalog = pd.read_csv(path, sep="\t", keep_default_na=False, dtype={"snippets": str})
        included = catalog[catalog.status == "ok"].assign(snippets=lambda frame: pd.to_numeric(frame.snippets))
        excluded = catalog[catalog.status != "ok"][["piece_id", "reason", "source"]]
        parts.append(
            f"<p>{Path(path).parent.name}: {len(included)} pieces, {int(included.snippets.sum())} snippets; "
            f"{len(excluded)} excluded.</p>" + (table_html(excluded) if len(excluded) else "")
        )
    return "".join(parts) + "</section>"


def contents(sections: list[str]) -> str:
    """A list of contents: one link per section after the answer, by its id and heading."""
    items = []
    for section in sections:
        if not section.startswith("<section id='"):
            continue
        anchor = section.split("'", 2)[1]
        title = section.split("<h2>", 1)[1].split("</h2>", 1)[0]
        items.append(f"<li><a href='#{anchor}'>{title}</a></li>")
    return "<nav id='contents'><h2>Contents</h2><ol>" + "".join(items) + "</ol></nav>"


def build_report(inputs: dict[str, Any], output_folder: Path, comparison_png: Path) -> str:
    table = pd.read_csv(inputs["summary"], sep="\t", keep_default_na=False, na_values=[""])
    # Identification rows have a section of their own; every other section reads the probes.
    summary = table[table.split != IDENTIFICATION_SPLIT] if "split" in table else table
    comparison_plot(summary, comparison_png)
    sections = [
        corpus_section(inputs["catalogs"]),
        probes_section(summary, inputs["metrics"], comparison_png),
        variants_section(summary),
        best_probe_section(summary, probe_folders(inputs["metrics"]), output_folder),
        retrieval_section(inputs["retrieval"]),
        geometry_section(inputs["geometry"]),
        identification_section(
            table, retrieval_maps(inputs["retrieval"]), inputs.get("identification", []), output_folder, best_row
        ),
        audit_section(inputs["audit"], inputs["groups"]),
        published_section(summary),
    ]
    sections = [section for section in sections if section]
    body = [
        "<h1>chorale-id report</h1>",
        answer_section(
            summary, retrieval_maps(inputs["retrieval"]), inputs.get("preconditions", []), inputs.get("uses", {})
        ),
        contents(sections),
        *sections,
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>chorale-id report</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def main(snakemake) -> None:  # pragma: no cover - the Snakemake edge
    output = Path(snakemake.output.report)
    output.parent.mkdir(parents=True, exist_ok=True)
    inputs = {key: snakemake.input[key] for key in ("summary", "audit", "groups")}
    inputs.update(
        {
            key: list(snakemake.input[key])
            for key in ("metrics", "retrieval", "geometry", "catalogs", "preconditions", "identification")
        }
    )
    inputs["uses"] = {
        "validation_probes": list(snakemake.params.validation_probes),
        "metric_head": snakemake.params.metric_head,
    }
    write_text_atomic(output, build_report(inputs, output.parent, Path(snakemake.output.comparison_png)))
