"""The methods text of a study: one paragraph set with its numbers, in Markdown and LaTeX, and the
BibTeX file of every metric's and every model's paper.

Pure: the tables of :func:`core.agreement.report.build_report` and the model description frame
(``core.workflows.catalog.describe_models``: model_id, name, paper) in, text out. Every number
comes from a table, formatted with ``core.reporting.exports.format_number`` (``DIGITS``), so the
paper and the dashboard print the same figure. Model names, pipelines, attributes and papers are
user text: they are escaped for the output format (LaTeX specials; Markdown punctuation).

Bibliographic entries are written out with the fields we are sure of; a field we could not
verify is left out rather than guessed. A model paper not in ``MODEL_REFERENCES`` becomes a
``@misc`` entry whose note is the registry's ``paper`` text verbatim.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from core.reporting.exports import format_estimate, format_number, latex_escape

DIGITS = 2
ALPHA = 0.05
PRIMARY = (("valence", "ccc"), ("arousal", "ccc"), ("emotion", "accuracy"), ("emotion", "cohen_kappa"))
METRIC_NAMES = {"ccc": "CCC", "pearson_r": "Pearson r", "mae": "MAE", "accuracy": "accuracy",
                "cohen_kappa": "Cohen's kappa", "macro_f1": "macro-F1", "mean_bias": "mean bias"}
NOT_PIPELINES = frozenset({"consensus", "human", "unknown"})  # as core.agreement.pipelines


@dataclass(frozen=True)
class BibEntry:
    """One BibTeX entry; ``short`` is the author-year form used in the Markdown text."""

    key: str
    kind: str
    fields: tuple[tuple[str, str], ...]
    short: str

    def bibtex(self) -> str:
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in self.fields)
        return f"@{self.kind}{{{self.key},\n{body}\n}}\n"


def _article(key: str, short: str, author: str, title: str, journal: str, year: str,
             volume: str, number: str | None, pages: str, doi: str | None = None) -> BibEntry:
    fields = [("author", author), ("title", title), ("journal", journal), ("year", year),
              ("volume", volume), ("number", number), ("pages", pages), ("doi", doi)]
    return BibEntry(key, "article", tuple((k, v) for k, v in fields if v), short)


METRIC_REFERENCES: dict[str, BibEntry] = {entry.key: entry for entry in (
    _article("lin1989", "Lin, 1989", "Lin, Lawrence I-Kuei",
             "A concordance correlation coefficient to evaluate reproducibility", "Biometrics",
             "1989", "45", "1", "255--268", "10.2307/2532051"),
    _article("shrout1979", "Shrout & Fleiss, 1979", "Shrout, Patrick E. and Fleiss, Joseph L.",
             "Intraclass correlations: Uses in assessing rater reliability", "Psychological Bulletin",
             "1979", "86", "2", "420--428", "10.1037/0033-2909.86.2.420"),
    _article("mcgraw1996", "McGraw & Wong, 1996", "McGraw, Kenneth O. and Wong, S. P.",
             "Forming inferences about some intraclass correlation coefficients", "Psychological Methods",
             "1996", "1", "1", "30--46", "10.1037/1082-989X.1.1.30"),
    _article("fleiss1971", "Fleiss, 1971", "Fleiss, Joseph L.",
             "Measuring nominal scale agreement among many raters", "Psychological Bulletin",
             "1971", "76", "5", "378--382", "10.1037/h0031619"),
    _article("cohen1960", "Cohen, 1960", "Cohen, Jacob", "A coefficient of agreement for nominal scales",
             "Educational and Psychological Measurement", "1960", "20", "1", "37--46",
             "10.1177/001316446002000104"),
    _article("cohen1968", "Cohen, 1968", "Cohen, Jacob",
             "Weighted kappa: Nominal scale agreement provision for scaled disagreement or partial credit",
             "Psychological Bulletin", "1968", "70", "4", "213--220", "10.1037/h0026256"),
    BibEntry("krippendorff2011", "techreport", (
        ("author", "Krippendorff, Klaus"), ("title", "Computing {Krippendorff's} Alpha-Reliability"),
        ("institution", "Annenberg School for Communication, University of Pennsylvania"),
        ("type", "Departmental Papers ({ASC})"), ("year", "2011")), "Krippendorff, 2011"),
    _article("pearson1896", "Pearson, 1896", "Pearson, Karl",
             "Mathematical contributions to the theory of evolution. {III}. Regression, heredity, and panmixia",
             "Philosophical Transactions of the Royal Society of London. Series A", "1896", "187", None,
             "253--318"),
    _article("spearman1910", "Spearman, 1910", "Spearman, Charles", "Correlation calculated from faulty data",
             "British Journal of Psychology", "1910", "3", "3", "271--295"),
    _article("brown1910", "Brown, 1910", "Brown, William",
             "Some experimental results in the correlation of mental abilities",
             "British Journal of Psychology", "1910", "3", "3", "296--322"),
    _article("holm1979", "Holm, 1979", "Holm, Sture", "A simple sequentially rejective multiple test procedure",
             "Scandinavian Journal of Statistics", "1979", "6", "2", "65--70"),
    BibEntry("efron1993", "book", (
        ("author", "Efron, Bradley and Tibshirani, Robert J."), ("title", "An Introduction to the Bootstrap"),
        ("publisher", r"Chapman \& Hall"), ("address", "New York"), ("year", "1993")),
        "Efron & Tibshirani, 1993"),
    _article("lin1991", "Lin, 1991", "Lin, Jianhua", "Divergence measures based on the {Shannon} entropy",
             "IEEE Transactions on Information Theory", "1991", "37", "1", "145--151", "10.1109/18.61115"),
)}

# Built-in models' papers, recognised by a fragment of the registry's ``paper`` text.
MODEL_REFERENCES: dict[str, BibEntry] = {
    "video-based frame-level facial analysis": BibEntry("savchenko2022", "inproceedings", (
        ("author", "Savchenko, Andrey V."),
        ("title", "Video-based frame-level facial analysis of affective behavior on mobile devices "
                  "using {EfficientNets}"),
        ("booktitle", "Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern "
                      "Recognition Workshops ({CVPRW})"),
        ("year", "2022")), "Savchenko, 2022"),
    "estimation of continuous valence and arousal": _article(
        "toisoul2021", "Toisoul et al., 2021",
        "Toisoul, Antoine and Kossaifi, Jean and Bulat, Adrian and Tzimiropoulos, Georgios and Pantic, Maja",
        "Estimation of continuous valence and arousal levels from faces in naturalistic conditions",
        "Nature Machine Intelligence", "2021", "3", None, "42--50"),
    "multitask emotion recognition with incomplete labels": BibEntry("deng2020", "inproceedings", (
        ("author", "Deng, Didan and Chen, Zhaokang and Shi, Bertram E."),
        ("title", "Multitask emotion recognition with incomplete labels"),
        ("booktitle", "15th IEEE International Conference on Automatic Face and Gesture Recognition ({FG} 2020)"),
        ("year", "2020")), "Deng et al., 2020"),
    "wide ensemble-based convolutional": BibEntry("siqueira2020", "inproceedings", (
        ("author", "Siqueira, Henrique and Magg, Sven and Wermter, Stefan"),
        ("title", "Efficient facial feature learning with wide ensemble-based convolutional neural networks"),
        ("booktitle", "Proceedings of the AAAI Conference on Artificial Intelligence"), ("volume", "34"),
        ("year", "2020")), "Siqueira et al., 2020"),
}

# (term, definition, reference keys): the statistics section, the same for every study.
DEFINITIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Concordance correlation coefficient (CCC)",
     "twice the covariance of model and human mean ratings divided by the sum of their variances and "
     "the squared difference of their means (population moments); 1 is perfect agreement, it "
     "penalises both scatter and bias", ("lin1989",)),
    ("Pearson r and MAE", "linear correlation and mean absolute difference with the human mean rating",
     ("pearson1896",)),
    ("Intraclass correlation", "ICC(A,1) (absolute agreement, two-way random effects, single rater; "
     "ICC(2,1) in Shrout and Fleiss' naming) and the other five forms, with exact F-distribution CIs",
     ("shrout1979", "mcgraw1996")),
    ("Fleiss' kappa", "chance-corrected agreement of the human labels over all raters", ("fleiss1971",)),
    ("Cohen's kappa", "chance-corrected agreement of a model's labels with the human majority label; "
     "weighted kappa for ordinal ratings", ("cohen1960", "cohen1968")),
    ("Krippendorff's alpha", "one minus observed over expected disagreement: nominal for labels, "
     "interval for valence and arousal", ("krippendorff2011",)),
    ("Accuracy and macro-F1", "share of stimuli where the model's label equals the human majority label, "
     "and the unweighted mean of the per-emotion F1 scores", ()),
    ("Jensen-Shannon divergence", "divergence between a model's class probabilities and the human vote "
     "shares", ("lin1991",)),
    ("Human ceiling", "the median leave-one-rater-out score: each rater against the mean (valence, "
     "arousal) or majority label of the other raters", ()),
    ("Spearman-Brown", "reliability of the mean of k raters, k rho / (1 + (k - 1) rho), from ICC(A,1), "
     "and the number of raters needed for a target reliability", ("spearman1910", "brown1910")),
    ("Paired differences", "model minus model (or human ceiling) on the stimuli both cover, with a "
     "paired percentile bootstrap CI and a two-sided bootstrap p-value, Holm-adjusted within each "
     "dimension and metric", ("holm1979", "efron1993")),
    ("Confidence intervals", "95 percent percentile bootstrap intervals over stimuli; one set of "
     "resamples serves every statistic, so differences are paired", ("efron1993",)),
)


@dataclass(frozen=True)
class Methods:
    """The methods text in both formats and the bibliography both cite."""

    markdown: str
    latex: str
    bibtex: str


@dataclass(frozen=True)
class _Style:
    """How one output format writes user text, citations and headings."""

    user: Callable[[object], str]
    cite: Callable[[Sequence[BibEntry]], str]
    heading: Callable[[str], str]
    definitions: Callable[[list[tuple[str, str]]], str]
    dash: str


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]<>#|~$])")


def markdown_escape(text: object) -> str:
    """User text for Markdown: punctuation that could format or link is backslash-escaped."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def tex_text(text: object) -> str:
    """User text for LaTeX: specials escaped, Unicode minus and dashes spelled for pdfLaTeX."""
    return latex_escape(text).replace("\u2212", "--").replace("\u2013", "--")


MARKDOWN = _Style(
    user=markdown_escape,
    cite=lambda entries: f" ({'; '.join(markdown_escape(e.short) for e in entries)})" if entries else "",
    heading=lambda text: f"## {text}\n",
    definitions=lambda items: "\n".join(f"- **{term}**: {text}" for term, text in items) + "\n",
    dash="\u2013",
)
LATEX = _Style(
    user=tex_text,
    cite=lambda entries: f"~\\cite{{{','.join(e.key for e in entries)}}}" if entries else "",
    heading=lambda text: f"\\subsection*{{{text}}}\n",
    definitions=lambda items: "\\begin{description}\n" + "".join(
        f"  \\item[{term}] {text}\n" for term, text in items) + "\\end{description}\n",
    dash="--",
)


def number(value: object) -> str:
    """A number as the methods text prints it."""
    return format_number(value, DIGITS)


def estimate(row: pd.Series) -> str:
    """``0.62 [0.55, 0.68]`` from a table row."""
    return format_estimate(row["estimate"], row.get("ci_low"), row.get("ci_high"), DIGITS)


def model_reference(paper: object) -> BibEntry | None:
    """The bibliography entry of a model's ``paper`` text (None when it has none)."""
    text = "" if paper is None or (isinstance(paper, float) and math.isnan(paper)) else str(paper).strip()
    if not text:
        return None
    lowered = text.lower()
    for fragment, entry in MODEL_REFERENCES.items():
        if fragment in lowered:
            return entry
    key = "paper" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return BibEntry(key, "misc", (("note", latex_escape(text)),), text)


def methods_text(tables: dict[str, pd.DataFrame], models: pd.DataFrame | None, *,
                 n_boot: int, seed: int) -> Methods:
    """The methods text of one report (``tables``) with its bibliography.

    ``models``: model descriptions with ``model_id`` and ``paper`` (imported tools may have no
    paper; they are named without a citation).
    """
    papers = _papers(tables, models)
    cited = [*METRIC_REFERENCES.values(), *dict.fromkeys(e for e in papers.values() if e is not None)]
    return Methods(
        markdown=_document(tables, papers, MARKDOWN, n_boot, seed),
        latex="% Methods text written by FaceAgree; the \\cite keys are in references.bib.\n"
              + _document(tables, papers, LATEX, n_boot, seed),
        bibtex="\n".join(entry.bibtex() for entry in cited),
    )


def _papers(tables: dict[str, pd.DataFrame], models: pd.DataFrame | None) -> dict[str, BibEntry | None]:
    analysed = tables.get("models", pd.DataFrame())
    ids = analysed["model_id"].astype(str).tolist() if not analysed.empty else []
    described = {} if models is None or models.empty or "paper" not in models else dict(
        zip(models["model_id"].astype(str), models["paper"]))
    return {model_id: model_reference(described.get(model_id)) for model_id in ids}


def _document(tables, papers, style: _Style, n_boot: int, seed: int) -> str:
    paragraphs = [
        _data(tables, style), _human_reliability(tables, style), _ceiling(tables, style),
        _models(tables, papers, style), _differences(tables, style), _pipelines(tables, style),
        _replication(tables, style), _planning(tables, style), _retest(tables, style),
        _bootstrap(n_boot, seed, style),
    ]
    definitions = [(term, text + style.cite(_refs(keys))) for term, text, keys in DEFINITIONS]
    return (style.heading("Methods") + "\n" + "\n\n".join(p for p in paragraphs if p) + "\n\n"
            + style.heading("Statistics") + "\n" + style.definitions(definitions))


def _refs(keys: Iterable[str]) -> list[BibEntry]:
    return [METRIC_REFERENCES[key] for key in keys]


def _rows(table: pd.DataFrame | None, **equal: object) -> pd.DataFrame:
    if table is None or table.empty:
        return pd.DataFrame()
    mask = pd.Series(True, index=table.index)
    for column, value in equal.items():
        if column not in table:
            return pd.DataFrame()
        mask &= table[column] == value
    return table[mask]


def _metric(dimension: str, metric: str) -> str:
    return f"{dimension} {METRIC_NAMES.get(metric, metric)}"


def _data(tables, style: _Style) -> str:
    consensus = tables.get("consensus", pd.DataFrame())
    if consensus.empty:
        return ""
    per_stimulus = consensus["n_raters"].astype(int)
    raters = _rows(tables.get("alpha")).get("n_raters", pd.Series(dtype=float)).max()
    raters_text = f" by {number(int(raters))} human raters" if pd.notna(raters) else ""
    return (f"The study comprised {number(len(consensus))} stimuli rated{raters_text} "
            f"({number(int(per_stimulus.sum()))} ratings; {number(float(per_stimulus.mean()))} ratings "
            f"per stimulus on average, range {number(int(per_stimulus.min()))}{style.dash}"
            f"{number(int(per_stimulus.max()))}).")


def _human_reliability(tables, style: _Style) -> str:
    parts = []
    fleiss = _rows(tables.get("fleiss"), metric="fleiss_kappa")
    if not fleiss.empty:
        parts.append(f"Fleiss' kappa of the emotion labels was {estimate(fleiss.iloc[0])}"
                     + style.cite(_refs(["fleiss1971"])))
    for _, row in _rows(tables.get("alpha")).iterrows():
        parts.append(f"Krippendorff's alpha ({style.user(row['level'])}) of {style.user(row['dimension'])} "
                     f"was {estimate(row)}" + style.cite(_refs(["krippendorff2011"])))
    for _, row in _rows(tables.get("icc"), form="ICC(A,1)").iterrows():
        parts.append(f"ICC(A,1) of {style.user(row['dimension'])} was {estimate(row)}"
                     + style.cite(_refs(["shrout1979", "mcgraw1996"])))
    return ("Human agreement: " + "; ".join(parts) + ".") if parts else ""


def _ceiling(tables, style: _Style) -> str:
    ceiling = tables.get("ceiling", pd.DataFrame())
    if ceiling.empty:
        return ""
    parts = [f"{_metric(style.user(r['dimension']), r['metric'])} {estimate(r)}" for _, r in ceiling.iterrows()]
    return ("The human ceiling, the median leave-one-rater-out score of one rater against the mean "
            "rating or majority label of the others, was " + "; ".join(parts)
            + style.cite(_refs(["lin1989", "cohen1960"])) + ".")


def _model_scores(tables, model_id: str) -> list[tuple[str, str, pd.Series]]:
    continuous = _rows(tables.get("model_continuous"), model_id=model_id)
    labels = _rows(tables.get("model_labels"), model_id=model_id, reference="human_majority", scope="all")
    scores = []
    for dimension, metric in PRIMARY:
        source = labels if dimension == "emotion" else _rows(continuous, dimension=dimension)
        row = _rows(source, metric=metric)
        if not row.empty:
            scores.append((dimension, metric, row.iloc[0]))
    return scores


def _models(tables, papers: dict[str, BibEntry | None], style: _Style) -> str:
    analysed = tables.get("models", pd.DataFrame())
    if analysed.empty:
        return "No model predictions were analysed."
    pipelines = [p for p in dict.fromkeys(analysed["pipeline"].astype(str)) if p not in NOT_PIPELINES]
    sentences = [f"We compared {number(len(analysed))} models from {number(len(pipelines))} training "
                 f"pipelines ({', '.join(style.user(p) for p in pipelines)}) with the human ratings."]
    for row in analysed.itertuples():
        reference = papers.get(str(row.model_id))
        scores = _model_scores(tables, str(row.model_id))
        described = "; ".join(f"{_metric(style.user(d), m)} {estimate(s)}" for d, m, s in scores)
        sentences.append(f"{style.user(row.model_name)} (pipeline {style.user(row.pipeline)})"
                         + style.cite([reference] if reference else []) + f": {described or 'no scores'}.")
    return " ".join(sentences)


def _differences(tables, style: _Style) -> str:
    differences = tables.get("model_differences", pd.DataFrame())
    if differences.empty:
        return ""
    pairs = _rows(differences, comparison="model vs model")
    significant = int((pairs["p_holm"] < ALPHA).sum()) if not pairs.empty else 0
    text = (f"Of {number(len(pairs))} paired comparisons between models (every pair, every metric), {number(significant)} differed with a "
            f"Holm-adjusted p below {number(ALPHA)}" + style.cite(_refs(["holm1979"])) + ".")
    ceiling = _rows(differences, comparison="model vs human ceiling")
    within = []
    for dimension, metric in PRIMARY:
        rows = _rows(ceiling, dimension=dimension, metric=metric)
        if rows.empty:
            continue
        names = [style.user(n) for n in rows.loc[rows["within_human_range"] == True, "name_a"]]  # noqa: E712
        within.append(f"{_metric(style.user(dimension), metric)}: {number(len(names))} of "
                      f"{number(len(rows))} models" + (f" ({', '.join(names)})" if names else ""))
    if within:
        text += (" Models within the human range (CI overlapping the raters' leave-one-out "
                 "interquartile range): " + "; ".join(within) + ".")
    return text


def _pipelines(tables, style: _Style) -> str:
    pooled = _rows(tables.get("pipelines"), pipeline="all pipelines")
    parts = []
    for dimension, metric in PRIMARY[:3]:
        rows = _rows(pooled, dimension=dimension, metric=metric)
        between = _rows(rows, statistic="between_pipeline_sd")
        within = _rows(rows, statistic="within_pipeline_sd")
        if between.empty:
            continue
        text = f"{_metric(style.user(dimension), metric)}: between {estimate(between.iloc[0])}"
        if not within.empty:
            text += f", within {estimate(within.iloc[0])}"
        parts.append(text)
    if not parts:
        return ""
    return ("Spread of agreement across training pipelines (SD of the pipeline means) against the "
            "spread within pipelines (SD of the models of one pipeline): " + "; ".join(parts) + ".")


def _replication(tables, style: _Style) -> str:
    table = tables.get("replication", pd.DataFrame())
    summaries = _rows(table, unit="summary")
    if summaries.empty:
        return ""
    parts = []
    for _, summary in summaries.iterrows():
        keys = dict(finding=summary["finding"], dimension=summary["dimension"], metric=summary["metric"])
        pooled = _rows(table, unit="pooled", **keys)
        pooled_text = f"pooled {estimate(pooled.iloc[0])}, " if not pooled.empty else ""
        parts.append(f"{style.user(summary['finding'])} ({_metric(style.user(summary['dimension']), summary['metric'])}): "
                     f"{pooled_text}{style.user(summary['summary'])}")
    return ("Replication across pipelines (a pipeline replicates a finding when its estimate has the "
            "pooled sign and its CI excludes 0; pooled CIs from the joint bootstrap): "
            + "; ".join(parts) + ".")


def _planning(tables, style: _Style) -> str:
    needed = _rows(tables.get("rater_planning"), quantity="raters_needed", form="ICC(A,1)")
    parts = []
    for _, row in needed.iterrows():
        if row["target"] != 0.8:
            continue
        count = row["estimate"]
        value = number(int(count)) if math.isfinite(count) else "not reachable"
        bounds = (f" (95 percent CI {number(int(row['ci_low']))}{style.dash}{number(int(row['ci_high']))})"
                  if math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"]) else "")
        parts.append(f"{style.user(row['dimension'])} {value}{bounds} (panel of {number(int(row['panel_size']))})")
    if not parts:
        return ""
    return ("By the Spearman-Brown formula applied to ICC(A,1)" + style.cite(_refs(["spearman1910", "brown1910"]))
            + ", the number of raters whose mean reaches a reliability of 0.80 is " + "; ".join(parts) + ".")


def _retest(tables, style: _Style) -> str:
    retest = tables.get("test_retest", pd.DataFrame())
    if retest.empty:
        return ""
    parts = [f"{style.user(r['dimension'])} {style.user(r['form'] if pd.notna(r.get('form')) else r['metric'])} "
             f"{estimate(r)}" for _, r in retest.iterrows()]
    return "Within-rater test-retest reliability (first against second rating): " + "; ".join(parts) + "."


def _bootstrap(n_boot: int, seed: int, style: _Style) -> str:
    if n_boot <= 1:
        return "No bootstrap CIs were computed (analytic CIs only)."
    return (f"Unless stated otherwise, CIs are 95 percent percentile bootstrap intervals over stimuli "
            f"({number(n_boot)} resamples, seed {number(seed)})" + style.cite(_refs(["efron1993"])) + ".")
