"""Methods text (issue 12, item 9): the study's real numbers, a bibliography that parses and
covers every citation, hostile model names escaped; written by ``python -m core report``."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from core.agreement.report import build_report
from core.agreement.synthetic import synthetic_study
from core.models import registry
from core.reporting.methods import (
    METRIC_REFERENCES,
    MODEL_REFERENCES,
    estimate,
    markdown_escape,
    methods_text,
    model_reference,
)
from tests.test_report_cli import STUDY, run_cli

N_BOOT = 50
HOSTILE = r"Evil_#1 & 50% {\input{/etc/passwd}} $x^2$ ~[link](http://x)"


@pytest.fixture(scope="module")
def study():
    ratings, predictions, stimuli, models = synthetic_study(30, 5, 3, seed=7)
    models = models.assign(paper=[
        "Toisoul, Kossaifi, Bulat, Tzimiropoulos & Pantic, Estimation of continuous valence and arousal "
        "levels from faces in naturalistic conditions, Nature Machine Intelligence 3, 42-50 (2021)",
        r"Doe & Roe (2024). A_paper with {braces} and 100% \emph{hostility}.",
        "",
    ])
    models.loc[0, "name"] = HOSTILE
    return ratings, predictions, stimuli, models


@pytest.fixture(scope="module")
def tables(study):
    return build_report(*study, n_boot=N_BOOT, seed=1)


@pytest.fixture(scope="module")
def text(study, tables):
    return methods_text(tables, study[3], n_boot=N_BOOT, seed=1)


def cite_keys(latex: str) -> set[str]:
    return {key.strip() for group in re.findall(r"\\cite\{([^}]*)\}", latex) for key in group.split(",")}


def bib_keys(bibtex: str) -> list[str]:
    return re.findall(r"^@\w+\{([^,]+),", bibtex, flags=re.M)


def balanced(text: str) -> bool:
    """Unescaped braces balance and never close more than they opened."""
    depth = 0
    for match in re.finditer(r"(?<!\\)[{}]", text):
        depth += 1 if match.group() == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def test_methods_carry_the_study_numbers(tables, text) -> None:
    consensus = tables["consensus"]
    assert f"The study comprised {len(consensus)} stimuli rated by 5 human raters" in text.markdown
    assert f"({int(consensus['n_raters'].sum())} ratings;" in text.latex
    fleiss = tables["fleiss"].query("metric == 'fleiss_kappa'").iloc[0]
    assert f"Fleiss' kappa of the emotion labels was {estimate(fleiss)}" in text.markdown
    for row in tables["ceiling"].itertuples():
        assert f"{row.dimension} " in text.latex and estimate(pd.Series(row._asdict())) in text.latex
    continuous = tables["model_continuous"].query("metric == 'ccc'")
    for row in continuous.itertuples():
        assert f"{row.dimension} CCC {estimate(pd.Series(row._asdict()))}" in text.markdown
    accuracy = tables["model_labels"].query("reference == 'human_majority' and scope == 'all' and metric == 'accuracy'")
    for row in accuracy.itertuples():
        assert f"emotion accuracy {estimate(pd.Series(row._asdict()))}" in text.latex
    assert f"We compared {len(tables['models'])} models from 3 training pipelines" in text.markdown
    for row in tables["replication"].query("unit == 'summary'").itertuples():
        assert row.summary in text.markdown
    pooled = tables["replication"].query("unit == 'pooled'").iloc[0]
    assert f"pooled {estimate(pooled)}" in text.markdown
    needed = tables["rater_planning"].query("quantity == 'raters_needed' and form == 'ICC(A,1)' and target == 0.8")
    for row in needed.itertuples():
        assert f"{row.dimension} {int(row.estimate)} (95 percent CI {int(row.ci_low)}" in text.markdown
    assert f"({N_BOOT} resamples, seed 1)" in text.markdown
    between = tables["pipelines"].query("pipeline == 'all pipelines' and statistic == 'between_pipeline_sd' "
                                        "and dimension == 'valence' and metric == 'ccc'").iloc[0]
    assert f"valence CCC: between {estimate(between)}" in text.latex
    assert estimate(fleiss) == f"{fleiss['estimate']:.2f} [{fleiss['ci_low']:.2f}, {fleiss['ci_high']:.2f}]"


def test_bibliography_parses_and_covers_every_citation(text) -> None:
    keys = bib_keys(text.bibtex)
    assert len(keys) == len(set(keys))
    assert balanced(text.bibtex)
    assert text.bibtex.count("@") == len(keys)
    cited = cite_keys(text.latex)
    assert cited and cited <= set(keys)
    assert set(METRIC_REFERENCES) <= set(keys)
    assert "toisoul2021" in cited  # the registry's EmoNet paper text is recognised
    misc = [k for k in keys if k.startswith("paper")]
    assert len(misc) == 1 and misc[0] in cited  # the card-style paper, verbatim as a note
    assert r"100\% \textbackslash{}emph\{hostility\}" in text.bibtex


def test_hostile_model_names_are_escaped(text) -> None:
    assert balanced(text.latex)
    assert r"Evil\_\#1 \& 50\% \{\textbackslash{}input\{/etc/passwd\}\} \$x\textasciicircum{}2\$" in text.latex
    assert r"\input" not in text.latex
    assert markdown_escape(HOSTILE) in text.markdown
    assert "[link](http://x)" not in text.markdown


def test_every_builtin_model_paper_has_a_curated_entry() -> None:
    for spec in registry.builtin_specs().values():
        entry = model_reference(spec.paper)
        assert entry is not None and entry in MODEL_REFERENCES.values(), spec.id
    assert model_reference("") is None and model_reference(None) is None


def test_report_command_writes_methods_and_bibliography(sessions, db_url, tmp_path: Path) -> None:
    from tests.test_report_cli import seed_study

    seed_study(sessions)
    out = tmp_path / "out"
    assert run_cli(db_url, "--study", STUDY, "--out", str(out), "--boot", "30", "--no-figures") == 0
    latex = (out / "methods.tex").read_text(encoding="utf-8")
    bibtex = (out / "references.bib").read_text(encoding="utf-8")
    assert cite_keys(latex) <= set(bib_keys(bibtex))
    ceiling = pd.read_csv(out / "tables" / "ceiling.csv", encoding="utf-8-sig")
    first = ceiling.iloc[0]
    assert estimate(first) in (out / "methods.md").read_text(encoding="utf-8")
