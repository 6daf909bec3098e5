"""What a split must hold before a probe, retrieval or the geometry figures can say anything.

After exclusions a corpus can be too small to learn from: one piece left (a "classifier"
of one class scores 100%), no piece with two snippets (nothing to test on), no
validation snippet for a probe that picks its epoch on validation, a test piece with no
training snippet. The ``preconditions`` rule checks all of it once per variant, before
any probe trains (``failed_preconditions``: counts from the split assignment, one
failure per unmet condition, each naming its counts), and writes one record. Each stage
that would have trained or scored reads the record and, when one of its conditions
failed, writes a "not run" result with the reason instead (``refusal``), so the workflow
still ends in its report, which says why nothing ran.

Uses, the stages that need each set of conditions:
``probes`` (classify on a closed-set split or a transfer), ``early_stopping`` (probes that
select their epoch on validation), ``retrieval`` (held-out pieces of an open-set split),
``metric_head`` (the retrieval's learned projection) and ``geometry`` (same- against
different-piece distances, from the catalog: it needs no split).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.plumbing.roles import CLOSED_SET_SPLITS, ROLES, TRAINING_ROLES

NOT_RUN = "not run"
RAN = "ran"
SPLIT_USES = {"closed": ("probes", "early_stopping"), "open": ("retrieval", "metric_head")}
EXCLUDED_NAMED_MAX = 10

# What to do, one clause each: a message joins them with semicolons.
MORE_PIECES = (
    "fix or replace the excluded scores, or add scores, until at least 2 pieces with at least 2 snippets each "
    "remain (a shorter window, segmentation.window_measures, gives a piece more snippets)"
)
MORE_VALIDATION = (
    "for probes that choose on validation, give the split a validation share (splits.validation_fraction: a piece "
    "lends one from its third snippet on), or set early_stopping: false on neural probes (sweep.base for the sweep); "
    "logistic and knn probes always choose on validation"
)
MORE_HELD_OUT = (
    "for by_piece, add pieces or raise splits.test_fraction (the share of pieces it holds out whole), or drop "
    "by_piece from splits.names"
)
HEAD_OFF = "for the metric head, add pieces with 2 or more snippets or set retrieval.metric_head.enabled: false"


@dataclass(frozen=True)
class Failure:
    """One unmet condition: for which use, what was counted, what is needed, and what to do."""

    use: str
    count: str
    found: int
    needed: str
    text: str
    remedy: str


def split_counts(assignment: pd.DataFrame) -> dict[str, int]:
    """The counts every condition reads, from a split's (snippet_id, piece_id, role) rows."""
    per_piece = assignment.groupby("piece_id").size()
    trained = set(assignment.piece_id[assignment.role.isin(TRAINING_ROLES)])
    test = assignment[assignment.role == "test"]
    test_per_piece = test.groupby("piece_id").size()
    train_per_piece = assignment[assignment.role == "train"].groupby("piece_id").size()
    return {
        "pieces": int(len(per_piece)),
        "pieces_with_two_snippets": int((per_piece >= 2).sum()),
        **{f"{role}_snippets": int((assignment.role == role).sum()) for role in ROLES},
        "training_pieces": len(trained),
        "test_pieces": int(len(test_per_piece)),
        "test_pieces_without_training": len(set(test_per_piece.index) - trained),
        "test_pieces_with_two_snippets": int((test_per_piece >= 2).sum()),
        "pieces_with_two_train_snippets": int((train_per_piece >= 2).sum()),
    }


def catalog_counts(catalog: pd.DataFrame) -> dict[str, int]:
    """The counts of the pieces a variant rendered (catalog rows with status ok)."""
    included = catalog[catalog.status == "ok"]
    snippets = pd.to_numeric(included.snippets, errors="coerce").fillna(0)
    return {"pieces": int(len(included)), "pieces_with_two_snippets": int((snippets >= 2).sum())}


def failed_preconditions(counts: dict[str, int], uses: Iterable[str]) -> list[Failure]:
    """Every condition of ``uses`` that ``counts`` does not meet, each with its counts."""
    failed: list[Failure] = []

    def need(use: str, count: str, ok: bool, needed: str, text: str, remedy: str) -> None:
        if not ok:
            failed.append(Failure(use, count, int(counts[count]), needed, text, remedy))

    for use in uses:
        if use == "probes":
            need(
                use,
                "training_pieces",
                counts["training_pieces"] >= 2,
                "at least 2",
                f"{counts['training_pieces']} piece(s) left to train on (a classifier needs at least 2 to choose between)",
                MORE_PIECES,
            )
            need(
                use,
                "test_snippets",
                counts["test_snippets"] >= 1,
                "at least 1",
                "no test snippet (only a piece with at least 2 snippets gives one, and "
                f"{counts['pieces_with_two_snippets']} of {counts['pieces']} piece(s) have 2 or more)",
                MORE_PIECES,
            )
            need(
                use,
                "test_pieces_without_training",
                counts["test_pieces_without_training"] == 0,
                "0",
                f"{counts['test_pieces_without_training']} test piece(s) with no training snippet (a class missing "
                "from training cannot be predicted)",
                "check the split's roles (every test piece needs training snippets)",
            )
        elif use == "early_stopping":
            need(
                use,
                "validation_snippets",
                counts["validation_snippets"] >= 1,
                "at least 1",
                "no validation snippet, so probes that choose on validation (early_stopping: true; kinds logistic, knn) "
                f"cannot run ({counts['train_snippets']} train, {counts['test_snippets']} test snippets)",
                MORE_VALIDATION,
            )
        elif use == "retrieval":
            need(
                use,
                "test_pieces_with_two_snippets",
                counts["test_pieces_with_two_snippets"] >= 1,
                "at least 1",
                f"{counts['test_pieces']} held-out piece(s), {counts['test_pieces_with_two_snippets']} of them with 2 "
                "or more snippets (a held-out snippet needs another of its piece to find)",
                MORE_HELD_OUT,
            )
            need(
                use,
                "training_pieces",
                counts["training_pieces"] >= 1,
                "at least 1",
                "no training piece (the standardisation and projections are fitted on training pieces)",
                MORE_HELD_OUT,
            )
        elif use == "metric_head":
            need(
                use,
                "pieces_with_two_train_snippets",
                counts["pieces_with_two_train_snippets"] >= 2,
                "at least 2",
                f"{counts['pieces_with_two_train_snippets']} training piece(s) with 2 or more snippets (the metric "
                "head's contrastive loss needs at least 2)",
                HEAD_OFF,
            )
        elif use == "geometry":
            need(
                use,
                "pieces",
                counts["pieces"] >= 2,
                "at least 2",
                f"{counts['pieces']} piece(s) (no different-piece pairs to compare)",
                MORE_PIECES,
            )
            need(
                use,
                "pieces_with_two_snippets",
                counts["pieces_with_two_snippets"] >= 1,
                "at least 1",
                "no piece with 2 or more snippets (no same-piece pairs)",
                MORE_PIECES,
            )
        else:
            raise ValueError(f"unknown precondition use '{use}'")
    return failed


def split_uses(split: str) -> tuple[str, ...]:
    """What runs on a split: probes on a closed-set split (or a transfer's), retrieval on the others."""
    return SPLIT_USES["closed" if split in CLOSED_SET_SPLITS else "open"]


def excluded_pieces(catalogs: dict[str, pd.DataFrame]) -> list[dict[str, str]]:
    """The catalog rows a variant excluded (piece, reason, source, catalog)."""
    rows = []
    for path, catalog in catalogs.items():
        for row in catalog[catalog.status != "ok"].itertuples():
            rows.append({"piece_id": row.piece_id, "reason": row.reason, "source": row.source, "catalog": path})
    return rows


def precondition_record(
    variant: str,
    assignments: dict[str, pd.DataFrame],
    catalogs: dict[str, pd.DataFrame],
    geometry: bool,
) -> dict[str, Any]:
    """Counts and failed conditions of every split of ``variant`` (and its geometry, for a
    variant rather than a transfer), for every use, whatever this run's probes need."""
    checks: dict[str, dict[str, Any]] = {}
    for split, assignment in assignments.items():
        counts = split_counts(assignment)
        checks[split] = {
            "counts": counts,
            "failed": [asdict(f) for f in failed_preconditions(counts, split_uses(split))],
        }
    if geometry:
        counts = catalog_counts(pd.concat(list(catalogs.values()), ignore_index=True))
        checks["geometry"] = {
            "counts": counts,
            "failed": [asdict(f) for f in failed_preconditions(counts, ["geometry"])],
        }
    included = sum(int((catalog.status == "ok").sum()) for catalog in catalogs.values())
    return {
        "variant": variant,
        "pieces_left": included if geometry else checks[next(iter(assignments))]["counts"]["pieces"],
        "excluded": excluded_pieces(catalogs),
        "checks": checks,
    }


def failures_of(record: dict[str, Any], part: str, uses: Iterable[str]) -> list[Failure]:
    """The failed conditions of ``uses`` on ``part`` (a split, or ``geometry``)."""
    uses = set(uses)
    return [
        Failure(**failure) for failure in record["checks"].get(part, {}).get("failed", []) if failure["use"] in uses
    ]


def active_uses(part: str, early_stopping: bool, metric_head: bool) -> list[str]:
    """The uses this run makes of ``part``: validation only when a probe stops early, the head only when enabled."""
    if part == "geometry":
        return ["geometry"]
    wanted = {"early_stopping": early_stopping, "metric_head": metric_head}
    return [use for use in split_uses(part) if wanted.get(use, True)]


def refusal(record: dict[str, Any], part: str, uses: Iterable[str]) -> str | None:
    """Why what needs ``uses`` cannot run on ``part``, or None when it can: the failed
    conditions with their counts, the excluded files and what to do."""
    failed = failures_of(record, part, uses)
    return compose_message(record, {part: failed}) if failed else None


def compose_message(record: dict[str, Any], failed_parts: dict[str, list[Failure]]) -> str:
    sentences = [f"{record['variant']}: {excluded_text(record)}."]
    for part, failed in failed_parts.items():
        where = "" if part == "geometry" else f" on {part}"
        sentences.append(f"{subject(part, failed)}{where}: {'; '.join(failure.text for failure in failed)}.")
    remedies = dict.fromkeys(failure.remedy for failed in failed_parts.values() for failure in failed)
    sentences.append(f"What to do: {'; '.join(remedies)}.")
    return " ".join(sentences)


def subject(part: str, failed: list[Failure]) -> str:
    uses = {failure.use for failure in failed}
    if part == "geometry":
        return "No geometry figures"
    if "probes" in uses:
        return "No probe can run"
    if "early_stopping" in uses:
        return "No probe that chooses on validation can run"
    return "No retrieval"


def excluded_text(record: dict[str, Any]) -> str:
    excluded = record["excluded"]
    left = f"{record['pieces_left']} piece(s) left after exclusions"
    if not excluded:
        return f"{left}, none excluded"
    named = "; ".join(f"{row['piece_id']} ({row['reason']})" for row in excluded[:EXCLUDED_NAMED_MAX])
    more = f"; and {len(excluded) - EXCLUDED_NAMED_MAX} more" if len(excluded) > EXCLUDED_NAMED_MAX else ""
    catalogs = ", ".join(sorted({row["catalog"] for row in excluded}))
    return f"{left}, {len(excluded)} excluded (see {catalogs}): {named}{more}"


def run_message(record: dict[str, Any], early_stopping_probes: list[str] | None, metric_head: bool) -> str:
    """The one message for a variant: every part of this run that cannot run and why, with
    the counts, the excluded files and what to do; empty when everything can run.

    The record holds only what the data allow; which uses this run makes of them (its probes
    that choose on validation, the metric head) is the run's config, read when the message is
    made, so a record never goes stale when a probe is added. ``None``: every use."""
    failed_parts = {}
    early_stopping = early_stopping_probes is None or bool(early_stopping_probes)
    # One order however the record was stored (the JSON file sorts its keys): splits, then geometry.
    for part in sorted(record["checks"], key=lambda name: (name == "geometry", name)):
        failed = failures_of(record, part, active_uses(part, early_stopping, metric_head))
        if failed:
            failed_parts[part] = failed
    if not failed_parts:
        return ""
    message = compose_message(record, failed_parts)
    early_stopping_failed = any(
        failure.use == "early_stopping" for failed in failed_parts.values() for failure in failed
    )
    if early_stopping_failed and early_stopping_probes:
        message += f" The probes that choose on validation are {', '.join(early_stopping_probes)}."
    return message


def run_end_messages(
    record_paths: list[str], report: str, early_stopping_probes: list[str], metric_head: bool
) -> list[str]:
    """The message of every record that has one, pointing to the report: what a finished run did not run."""
    messages = []
    for path in record_paths:
        if Path(path).exists():
            message = run_message(
                json.loads(Path(path).read_text(encoding="utf-8")), early_stopping_probes, metric_head
            )
            if message:
                messages.append(f"Not everything could run ({report} says the same). {message}")
    return messages
