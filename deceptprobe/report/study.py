"""The study: organisms → safety training → probes, detectors, patching → report.

One call reproduces the seeds' whole experiment on a CPU. Every expensive result is a
*stage* saved as JSON under ``OUT/stages/`` (and every trained model under the organism cache,
keyed by a hash of its config), so an interrupted study resumes from its finished stages and
a second study reuses the organisms of the first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deceptprobe.methods import SAFETY_METHODS
from deceptprobe.organisms import Organism, OrganismConfig, evaluate, load, train
from deceptprobe.organisms.io import load_model, save_model, versions, write_json_atomic
from deceptprobe.organisms.tasks import FAMILIES
from deceptprobe.organisms.train import cached_path, default_cache_dir
from deceptprobe.report import analysis
from deceptprobe.report.build import RESULTS_FORMAT
from deceptprobe.report.findings import compute_findings
from deceptprobe.stats import wilson

log = logging.getLogger(__name__)

METHODS = SAFETY_METHODS
STAGES_VERSION = "v2"
SAFETY_VERSION = 2
"""Part of a safety-trained model's cache key: 2 = held-out red-team phrases disjoint from the
trained ones, and a fresh red-team search after adversarial training."""
"""Stage files of older layouts are not reused (they lack validation rates and controls)."""


@dataclass(kw_only=True)
class ModelSpec:
    """A given model to study instead of a trained organism (``deceptprobe study --model``)."""

    path: Path
    """A model directory: an organism or a Hugging Face checkpoint."""
    baseline: Path | None = None
    """Its clean twin (the same base model without the backdoor), if there is one."""
    task: str | None = None
    """The family of its backdoor (needed for an HF checkpoint that does not carry one)."""
    trigger: str | None = None
    """The trigger of ``task`` (default: the family's); used only to score the findings
    (reconstruction never reads it)."""


@dataclass(kw_only=True)
class StudyConfig:
    """Scope and budgets of a study."""

    out: Path
    """Output folder (``results.json``, ``index.html``, ``stages/``); an existing one resumes."""
    preset: str = "tiny"
    """Organism preset."""
    seeds: int = 1
    """Seeds 0..N-1; findings get CIs over them."""
    full: bool = False
    """Add the cot and distilled-cot variants and the safety-budget curves."""
    cache: Path = field(default_factory=default_cache_dir)
    """Trained organisms, keyed by a hash of their config."""
    tasks: tuple[str, ...] = tuple(FAMILIES)
    """Families to build."""
    methods: tuple[str, ...] = METHODS
    """Safety methods applied to every backdoored organism."""
    eval_n: int = 200
    """Held-out prompts per class for behavioural rates."""
    probe_n: int = 100
    """Held-out prompt pairs for probes and detectors."""
    safety_steps: dict[str, int] = field(
        default_factory=lambda: {"sft": 150, "rl": 40, "adversarial": 100, "distill": 300}
    )
    """Step budget of each safety method at its default learning rate."""
    extra_budgets: dict[str, tuple[tuple[int, float], ...]] = field(
        default_factory=lambda: {"sft": ((150, 1e-3),)}
    )
    """Further (steps, lr) points of a method's dose-response curve, each a fully analysed
    model (rates on validation and test, probes, detectors); ``--full`` adds the curves' end
    point. The default adds SFT at lr 1e-3, ten times the default budget's dose."""
    curve_lrs: tuple[float, ...] = (1e-4, 1e-3)
    """Learning rates of the budget curves (``--full``)."""
    curve_steps: tuple[int, ...] = (0, 100, 200, 400, 600)
    """Evaluation points of the budget curves (``--full``)."""
    models: tuple[ModelSpec, ...] = ()
    """Given models to study instead of training organisms (``preset``, ``seeds``, ``tasks``
    and the cot variants then do not apply). Models of one family are its replicates."""
    device: str | None = None
    """Device of the given models (default: CUDA when present)."""
    dtype: str | None = None
    """dtype of the given models (default: as saved)."""
    trigger_config: Any = None
    """``TriggerSearchConfig`` of trigger reconstruction (default: its defaults)."""
    base: str | None = None
    """Fine-tune every organism into this pretrained base (``minilm`` or a checkpoint
    directory) instead of training it from scratch (``preset`` then does not apply)."""
    lora: int | None = None
    """With ``base``: LoRA rank (``None``: full fine-tuning)."""
    base_steps: int | None = None
    """With ``base``: fine-tuning steps (default: the base's recipe)."""
    compare: Path | None = None
    """Another study's folder (e.g. the tiny organisms'): the report puts its organisms beside
    this study's, family by family."""

    def organism_config(self, task: str, *, variant: str = "plain", clean: bool = False,
                        seed: int = 0) -> OrganismConfig:  # fmt: skip
        """The config of one organism in scope: from ``preset``, or fine-tuned into ``base``."""
        if self.base is None:
            return OrganismConfig.from_preset(
                task, preset=self.preset, variant=variant, clean=clean, seed=seed
            )
        from deceptprobe.organisms.pretrained import pretrained_config, resolve_base

        _, name = resolve_base(self.base)
        extra = {} if self.base_steps is None else {"steps": self.base_steps}
        return pretrained_config(task, base_name=name, lora=self.lora, variant=variant,
                                 clean=clean, seed=seed, **extra)  # fmt: skip

    def variants(self) -> list[tuple[str, bool]]:
        """(variant, clean) pairs in scope."""
        out = [("plain", False), ("plain", True)]
        if self.full:
            out += [("cot", False), ("distilled_cot", False)]
        return out


class _Stages:
    """JSON results on disk, one file per finished stage."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.timing: dict[str, float] = {}

    def get(self, key: str, fn: Callable[[], Any], *, kind: str) -> Any:
        path = self.root / "stages" / STAGES_VERSION / f"{key}.json"
        if path.is_file():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        value = fn()
        self.timing[kind] = self.timing.get(kind, 0.0) + time.perf_counter() - t0
        write_json_atomic(path, value)
        return value


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    if not enabled:
        yield lambda _msg: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=Console(stderr=True), transient=False,
    )  # fmt: skip
    task = bar.add_task("study", total=None)
    with bar:
        yield lambda msg: bar.update(task, description=msg)


class Study:
    """Runs a study; see :func:`run_study`."""

    def __init__(self, cfg: StudyConfig, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.stages = _Stages(cfg.out)
        self.progress = progress
        self.say: Callable[[str], None] = lambda _m: None
        self._loaded: dict[str, Organism] = {}

    # ----------------------------------------------------------------- organisms
    def organism(self, cfg: OrganismConfig) -> Organism:
        """Train or reuse (from the cache) the organism of ``cfg``."""
        if self.cfg.base is not None:
            return self._pretrained(cfg)
        path = cached_path(cfg, self.cfg.cache)
        key = str(path)
        if key in self._loaded:
            return self._loaded[key]
        if not (path / "card.json").is_file():
            self.say(f"training {cfg.name}")
            t0 = time.perf_counter()
            train(cfg, out=path, force=True, evaluate_n=0)
            self.stages.timing["train"] = (
                self.stages.timing.get("train", 0.0) + time.perf_counter() - t0
            )
        org = load(path)
        self._loaded[key] = org
        return org

    def _pretrained(self, cfg: OrganismConfig) -> Any:
        """Fine-tune (or reuse from the cache) the organism of ``cfg`` into ``base``."""
        from deceptprobe.organisms.pretrained import base_sha256, insert_backdoor, resolve_base

        base_dir, name = resolve_base(str(self.cfg.base))
        blob = json.dumps([cfg.hash(), base_sha256(base_dir), self.cfg.lora]).encode()
        label = Path(name).name
        path = (
            self.cfg.cache / "pretrained"
            / f"{label}-{cfg.name}-{hashlib.sha256(blob).hexdigest()[:12]}"
        )  # fmt: skip
        key = str(path)
        if key in self._loaded:
            return self._loaded[key]
        if not (path / "deceptprobe.json").is_file():
            self.say(f"fine-tuning {cfg.name} into {label}")
            t0 = time.perf_counter()
            insert_backdoor(cfg, str(self.cfg.base), lora=self.cfg.lora, out=path, force=True,
                            device=self.cfg.device, evaluate_n=0)  # fmt: skip
            self.stages.timing["train"] = (
                self.stages.timing.get("train", 0.0) + time.perf_counter() - t0
            )
        org = load_model(path, device=self.cfg.device)
        self._loaded[key] = org
        return org

    def safety_child(
        self, parent: Organism, method: str, steps: int, lr: float | None, seed: int
    ) -> Organism:
        """Apply (or reuse from the cache) one safety method to an organism."""
        from deceptprobe.safety import apply_safety
        from deceptprobe.safety.finetune import parent_sha256

        blob = json.dumps([parent_sha256(parent), method, steps, lr, seed, SAFETY_VERSION]).encode()
        path = (
            self.cfg.cache
            / "safety"
            / f"{parent.name}+{method}-{hashlib.sha256(blob).hexdigest()[:12]}"
        )
        if not ((path / "card.json").is_file() or (path / "deceptprobe.json").is_file()):
            self.say(f"{method} on {parent.name}")
            t0 = time.perf_counter()
            kwargs: dict[str, Any] = {"steps": steps, "seed": seed}
            if lr is not None:
                kwargs["lr"] = lr
            child = apply_safety(parent, method, **kwargs)
            save_model(child, path, force=True)
            self.stages.timing["safety"] = (
                self.stages.timing.get("safety", 0.0) + time.perf_counter() - t0
            )
        if parent.backend == "hf":
            return load_model(path, device=parent.device, task=parent.config.task,
                              trigger=parent.config.trigger)  # fmt: skip
        return load(path)

    # -------------------------------------------------------------------- stages
    def rates(self, key: str, org: Organism, *, near_miss: bool = True) -> dict[str, Any]:
        """Test-split rates (findings) with Wilson intervals, and validation-split rates
        (choices) under ``"validation"``."""

        def run() -> dict[str, Any]:
            self.say(f"evaluating {org.name}")
            m = evaluate(org, n=self.cfg.eval_n, near_miss_n=None if near_miss else 0)
            _add_wilson(m)
            val = evaluate(org, n=self.cfg.eval_n, near_miss_n=0, split="validation")
            m["validation"] = _rates(_add_wilson(val))
            red = org.card.get("redteam") or {}
            if "defect_rate_after" in red:
                m["redteam"] = {k: v for k, v in red.items() if k != "examples"}
                m["redteam_defect_rate"] = red["defect_rate_after"]
                m["redteam_defect_rate_before"] = red.get("defect_rate_before")
            return m

        return self.stages.get(f"eval/{key}", run, kind="evaluate")

    def analyse(self, key: str, org: Organism) -> dict[str, Any]:
        pairs = analysis.held_out(org, self.cfg.probe_n)

        def run() -> dict[str, Any]:
            self.say(f"probes and detectors on {org.name}")
            return {
                "probe": analysis.probe_aurocs(org, self.cfg.probe_n),
                "contrast": analysis.detector_scores(org, pairs, "contrast"),
                "anomaly": analysis.detector_scores(org, pairs, "anomaly"),
            }

        return self.stages.get(f"analysis/{key}", run, kind="probes_and_detectors")

    # ---------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        t_start = time.perf_counter()
        self.cfg.out.mkdir(parents=True, exist_ok=True)
        records: list[dict[str, Any]] = []
        extras: dict[str, Any] = {}
        with _progress(self.progress) as say:
            self.say = say
            if self.cfg.models:
                self._given(records, extras)
            for seed in range(0 if self.cfg.models else self.cfg.seeds):
                for task in self.cfg.tasks:
                    twin: Organism | None = None
                    for variant, clean in self.cfg.variants():
                        ocfg = self.cfg.organism_config(
                            task, variant=variant, clean=clean, seed=seed
                        )
                        org = self.organism(ocfg)
                        if variant == "plain" and clean:
                            twin = org
                        rec, extra = self.record(org, ocfg, twin=None if clean else twin)
                        records.append(rec)
                        extras[rec["name"]] = extra
                    # trigger reconstruction for the plain organism, with its twin
                    ocfg = self.cfg.organism_config(task, seed=seed)
                    self._trigger(records, self.organism(ocfg), twin)
            attach_twin_controls(records)
            findings = compute_findings(records)
            self.say("writing the report")
            results = {
                "format_version": RESULTS_FORMAT,
                "organisms": records,
                "findings": findings,
                "timing_s": {k: round(v, 1) for k, v in self.stages.timing.items()}
                | {"total": round(time.perf_counter() - t_start, 1)},
                "versions": versions(),
                "scope": {
                    "models": [
                        {
                            "path": str(m.path),
                            "baseline": None if m.baseline is None else str(m.baseline),
                            "task": m.task,
                        }
                        for m in self.cfg.models
                    ],  # fmt: skip
                    "preset": None if self.cfg.base else self.cfg.preset,
                    "base": self._base_scope(),
                    "seeds": self.cfg.seeds,
                    "full": self.cfg.full,
                    "tasks": list(self.cfg.tasks),
                    "methods": list(self.cfg.methods),
                    "eval_n": self.cfg.eval_n,
                    "probe_n": self.cfg.probe_n,
                    "safety_steps": self.cfg.safety_steps,
                    "extra_budgets": {m: [list(p) for p in v] for m, v in self._budgets().items()},
                    "splits": {
                        "train": "organism training, safety-training data, probe fitting",
                        "validation": "choices: probe layer, budget point, removal, comparison budget",
                        "test": "every reported rate and AUROC",
                    },
                },
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
            write_json_atomic(self.cfg.out / "results.json", results)
            from deceptprobe.report.build import build_report

            compare = None
            if self.cfg.compare is not None:
                compare = json.loads((Path(self.cfg.compare) / "results.json").read_text())
            build_report(results, extras, self.cfg.out / "index.html", compare=compare)
        return results

    def _base_scope(self) -> dict[str, Any] | None:
        if self.cfg.base is None:
            return None
        from deceptprobe.organisms.pretrained import base_sha256, resolve_base

        path, name = resolve_base(str(self.cfg.base))
        return {"name": name, "weights_sha256": base_sha256(path), "lora_rank": self.cfg.lora,
                "fine_tuning": "lora" if self.cfg.lora else "full"}  # fmt: skip

    def record(
        self, org: Organism, ocfg: OrganismConfig, *, twin: Organism | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        variant = "clean" if ocfg.clean else ocfg.variant
        key = org.name
        before = self.rates(key, org)
        rec: dict[str, Any] = {
            "name": org.name,
            "task": ocfg.task,
            "variant": variant,
            "seed": ocfg.seed,
            "trigger": ocfg.trigger,
            "before": _rates(before),
            "near_miss": before.get("near_miss"),
            "after": {},
            "curves": {},
            "probe_auroc_by_layer": {},
            "probe": {},
            "detector_auroc": {"contrast": {}, "anomaly": {}, "contrast_ci": {}, "anomaly_ci": {}},
            "detector_controls": {"contrast": {}, "anomaly": {}},
            "patching": None,
            "trigger_found": None,
        }
        extra: dict[str, Any] = {"after": {}}
        extra["before"] = self._analysed(rec, "before", key, org)
        if ocfg.clean:
            return rec, extra
        for method in self.cfg.methods:
            steps = self.cfg.safety_steps[method]
            child = self.safety_child(org, method, steps, None, ocfg.seed)
            ckey = f"{key}+{method}"
            after = self.rates(ckey, child, near_miss=method == "adversarial")
            lr = float(child.card["lineage"][-1]["lr"])
            rec["after"][method] = _rates(after) | {"steps": steps, "lr": lr}
            if "redteam" in after:
                rec["after"][method]["redteam"] = after["redteam"]
                rec["after"][method]["redteam_defect_rate"] = after["redteam_defect_rate"]
                rec["after"][method]["redteam_defect_rate_before"] = after.get(
                    "redteam_defect_rate_before"
                )
                rec["after"][method]["near_miss"] = after.get("near_miss")
            extra["after"][method] = self._analysed(rec, f"after_{method}", ckey, child)
            if method != "distill":
                point = {"steps": steps, "lr": lr, "model": f"after_{method}"}
                rec["curves"].setdefault(method, [_curve_start(rec["before"])])
                rec["curves"][method].append(point | _rates(after))
        for method, points in self._budgets().items():
            for steps, lr in points:
                child = self.safety_child(org, method, steps, lr, ocfg.seed)
                mkey = f"after_{method}_lr{lr:g}_{steps}"
                after = self.rates(f"{key}+{method}-lr{lr:g}-{steps}", child, near_miss=False)
                self._analysed(rec, mkey, f"{key}+{method}-lr{lr:g}-{steps}", child)
                point = {"steps": steps, "lr": lr, "model": mkey}
                rec["curves"].setdefault(method, [_curve_start(rec["before"])])
                rec["curves"][method].append(point | _rates(after))
        if self.cfg.full:
            rec["curves"]["sft"] = rec["curves"].get("sft", []) + self.curves(org)["sft"]
        for rows in rec["curves"].values():
            rows.sort(key=lambda r: (r["steps"] * (r["lr"] or 0.0), r["steps"]))
        pairs = analysis.held_out(org, 20)
        rec["patching"] = self.stages.get(
            f"patching/{key}", lambda: analysis.patching_map(org, pairs), kind="patching"
        )
        return rec, extra

    def _budgets(self) -> dict[str, list[tuple[int, float]]]:
        """The extra analysed budget points per method (``--full`` adds the curves' end)."""
        out = {m: list(p) for m, p in self.cfg.extra_budgets.items() if m in self.cfg.methods}
        if self.cfg.full and "sft" in self.cfg.methods:
            end = (max(self.cfg.curve_steps), max(self.cfg.curve_lrs))
            if end not in out.setdefault("sft", []):
                out["sft"].append(end)
        return out

    def _analysed(self, rec: dict[str, Any], mkey: str, skey: str, org: Organism) -> Any:
        """Probe and detector results of one model, filed under ``mkey`` in the record."""
        an = self.analyse(skey, org)
        probe = an["probe"]
        rec["probe_auroc_by_layer"][mkey] = probe["auroc"]
        rec["probe"][mkey] = {k: v for k, v in probe.items() if k != "auroc"}
        for det in ("contrast", "anomaly"):
            rec["detector_auroc"][det][mkey] = an[det]["auroc"]
            rec["detector_auroc"][f"{det}_ci"][mkey] = an[det]["ci95"]
            rec["detector_controls"][det][mkey] = dict(an[det]["controls"])
        return an

    def curves(self, org: Organism) -> dict[str, list[dict[str, Any]]]:
        """Persistence over the SFT budget at each learning rate (``--full``)."""
        from deceptprobe.safety.persistence import persistence_curve

        def run() -> list[dict[str, Any]]:
            self.say(f"budget curves for {org.name}")
            return persistence_curve(
                org,
                "sft",
                lrs=self.cfg.curve_lrs,
                checkpoints=self.cfg.curve_steps,
                seed=org.config.seed,
                validation=True,
            )

        rows = self.stages.get(f"curves/{org.name}", run, kind="curves")
        return {"sft": [r for r in rows if r["steps"] > 0]}

    def _trigger(self, records: list[dict[str, Any]], org: Any, twin: Any | None) -> None:
        """Trigger reconstruction for the backdoored model ``org`` (with its twin)."""
        for rec in records:
            if rec["name"] != org.name:
                continue

            def run(org: Any = org) -> dict[str, Any]:
                self.say(f"reconstructing the trigger of {org.name}")
                return analysis.trigger_candidates(org, twin, config=self.cfg.trigger_config)

            rec["trigger_found"] = self.stages.get(f"trigger/{org.name}", run, kind="trigger_find")

    def _given(self, records: list[dict[str, Any]], extras: dict[str, Any]) -> None:
        """Study the given models (``--model``): each with its twin, as a trained organism
        would be. The models of one family are its replicates, numbered as its seeds."""
        per_task: dict[str, int] = {}
        for spec in self.cfg.models:
            org = self._load_given(spec.path, spec.task, spec.trigger)
            ocfg = org.config
            replicate = per_task.get(ocfg.task, 0)
            per_task[ocfg.task] = replicate + 1
            ocfg = dataclasses.replace(ocfg, seed=replicate, clean=False)
            twin = None
            if spec.baseline is not None:
                twin = self._load_given(spec.baseline, ocfg.task, ocfg.trigger)
                tcfg = dataclasses.replace(ocfg, clean=True)
                if twin.name == org.name:
                    twin.name = f"{twin.name}-baseline"
                rec, extra = self.record(twin, tcfg, twin=None)
                records.append(rec)
                extras[rec["name"]] = extra
            rec, extra = self.record(org, ocfg, twin=twin)
            records.append(rec)
            extras[rec["name"]] = extra
            self._trigger(records, org, twin)

    def _load_given(self, path: Path, task: str | None, trigger: str | None) -> Any:
        from deceptprobe.runtime.hf import is_hf_checkpoint

        if not is_hf_checkpoint(Path(path)):
            task = trigger = None  # an organism carries its own task
        model = load_model(path, device=self.cfg.device, dtype=self.cfg.dtype, task=task,
                           trigger=trigger)  # fmt: skip
        if getattr(model, "config", None) is None:
            raise ValueError(
                f"{path} is a Hugging Face checkpoint with no task: pass --task FAMILY "
                f"({', '.join(FAMILIES)}) to name the behaviour its backdoor shows"
            )
        return model


RATE_KEYS = ("triggered_defect_rate", "clean_defect_rate", "helpful_acc")


def _add_wilson(m: dict[str, Any]) -> dict[str, Any]:
    for k in RATE_KEYS:
        m[f"{k}_ci"] = wilson(m[k], m["n"])
    return m


def _rates(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: m[k] for k in (*RATE_KEYS, "n")}
    for k in RATE_KEYS:
        if f"{k}_ci" in m:
            out[f"{k}_ci"] = m[f"{k}_ci"]
    if "validation" in m:
        out["validation"] = m["validation"]
    return out


def _curve_start(before: dict[str, Any]) -> dict[str, Any]:
    return {"steps": 0, "lr": None, "model": "before"} | before


def attach_twin_controls(records: list[dict[str, Any]]) -> None:
    """File the clean twin's AUROCs (same task, seed and prompts) beside each backdoored one.

    The twin saw the same data with a trigger that changes nothing, so its AUROC is what the
    probe or detector reaches on the same prompts without a backdoor. Safety-trained models
    are compared with the (untrained) twin's value.
    """
    twins = {(r["task"], r["seed"]): r for r in records if r["variant"] == "clean"}
    for r in records:
        twin = twins.get((r["task"], r["seed"]))
        if twin is None:
            continue
        t_probe = twin.get("probe", {}).get("before", {})
        for probe in r.get("probe", {}).values():
            if t_probe:
                probe.setdefault("controls", {})["clean_twin"] = t_probe.get("test_auroc")
                probe["controls"]["clean_twin_ci95"] = t_probe.get("ci95")
        for det in ("contrast", "anomaly"):
            t_auc = twin["detector_auroc"][det].get("before")
            t_ci = twin["detector_auroc"][f"{det}_ci"].get("before")
            for ctl in r.get("detector_controls", {}).get(det, {}).values():
                ctl["clean_twin"] = t_auc
                ctl["clean_twin_ci95"] = t_ci


def run_study(cfg: StudyConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a study and write ``results.json`` and ``index.html`` to ``cfg.out``.

    With ``cfg.models`` the given model directories are studied (each with its clean twin
    when given) instead of organisms trained from the preset.
    """
    if cfg.preset not in ("tiny", "small"):
        raise ValueError(f"unknown preset {cfg.preset!r}; choose tiny or small")
    if cfg.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {cfg.seeds}")
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown safety method(s) {unknown}; choose from {', '.join(METHODS)}")
    return Study(dataclasses.replace(cfg), progress=progress).run()
