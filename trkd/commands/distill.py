"""Commands of the distill area: `trkd dump-logits`, `trkd distill`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from trkd.distill.methods import METHODS, NONE
from trkd.errors import InputError
from trkd.layout import AVG_NAME
from trkd.schedules import TAU_GRID

# The student yaml `trkd distill` uses without --config, when the current folder has one.
STUDENT_YAML = "conf/student.yaml"


def dump_logits_cmd(
    model: Path = typer.Option(..., "--model", help="Teacher model dir (trkd train's EXP)."),
    data: Path = typer.Option(..., "--data", help="Training data dir with feats.scp and utt2spk."),
    nj: int = typer.Option(1, "--nj", help="Parallel jobs (CPU processes; parts of the output)."),
    logits: str = typer.Option("margin", "--logits", help="margin (what kd.logits reads by default), cosine or both."),
    topk: int = typer.Option(0, "--topk", help="Sparse dump: the target, the K top non-target logits with their "
                             "classes and the rest's mass, in float32 (0: full float16 rows)."),
    temperatures: str = typer.Option("1,4", "--temperatures", help="With --topk: the temperatures T at which the "
                                     "rest's mass is stored (the students' kd.*.temperature)."),
    embeddings: bool = typer.Option(False, "--embeddings", help="Also dump embeddings and level embeddings "
                                    "(read by emb and mlkd only)."),
    methods: str = typer.Option("", "--methods", help="The students' methods, space-separated: their needs "
                                "decide --embeddings (a recipe passes its methods=)."),
    checkpoint: str = typer.Option(AVG_NAME, "--checkpoint", help="File in MODEL/models, or an absolute path."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output dir (default MODEL/logits)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Chunks per teacher forward."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (default: bf16 on a "
                                            "GPU that has it, else fp32)."),
) -> None:
    """Dump the teacher's outputs on a fixed grid of training chunks, for students to train on.

    Cuts every utterance of DATA into num_frms chunks (OUT/chunks: chunk-id utt start length; a
    short utterance is one chunk, repeated to length) and writes, per chunk, the teacher's logits
    in OUT/logits.scp: float16 full rows, or with --topk K the teacher known at its top K (TRKD at
    τ < 1 is exact from it wherever its confusion set fits in K; kd, dkd, enskd see the classes below
    the top K as one lumped class). With --embeddings also its embedding (OUT/embedding.scp) and
    every level embedding (OUT/levels.scp, for mlkd). Also its class map OUT/spk2id. Finished parts
    are skipped on a re-run; the previous dump is replaced only once the new one is complete.
    """
    from trkd.distill.dump import dump_logits
    from trkd.distill.methods import needed
    from trkd.errors import InputError

    embeddings = embeddings or bool({"embedding", "levels"} & set(needed(methods.split())))

    try:
        temps = [float(t) for t in temperatures.split(",") if t.strip()]
    except ValueError:
        raise InputError(None, f"--temperatures {temperatures!r}: expected numbers separated by commas") from None
    typer.echo(f"wrote {dump_logits(model, data, out, nj, logits, checkpoint, device, batch_size, precision, topk, temps, embeddings)}")


def distill_cmd(
    ctx: typer.Context,
    teacher: Path = typer.Option(..., "--teacher", help="Teacher model dir (with logits/ from dump-logits)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Student yaml; its kd: block holds each method's "
                                          f"settings (default {STUDENT_YAML}, else run.sh's student=)."),
    method: str = typer.Option(..., "--method", help=f"{' '.join([NONE, *METHODS])}, or LOGIT+EMB (trkd+emb)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Training data dir with feats.scp and utt2spk "
                                        "(default: the teacher's, from TEACHER/config.yaml)."),
    exp: Optional[Path] = typer.Option(None, "--exp", help="Output model dir (default TEACHER/../STUDENT_METHOD)."),
    online: bool = typer.Option(False, "--online", help="Run the teacher on each batch instead of reading its dump."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in EXP."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override train.seed."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    quick: bool = typer.Option(False, "--quick", help="Smoke test: 2 epochs, schedules squeezed into them."),
    sets: List[str] = typer.Option([], "--set", help="Override a config key: kd.trkd.tau1=0.1 (repeatable)."),
    checkpoint: str = typer.Option(AVG_NAME, "--checkpoint", help="Teacher checkpoint: the online teacher, and the "
                                    "one a dump must have been made from (its sha256 is checked)."),
    dump: Optional[Path] = typer.Option(None, "--dump", help="Teacher dump dir (default TEACHER/logits)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (default: bf16 on a "
                                            "GPU that has it, else fp32)."),
) -> None:
    """Train a student distilled from a teacher: L = AAM + w(epoch)·logit-level KD + embedding KD.

    The student trains on the teacher dump's chunk grid, one chunk per utterance per epoch, with
    the teacher's class map; its outputs come from the dump, or, with --online (or no dump), from
    the frozen teacher run on the same augmented batch. Methods read their settings from the
    config's kd: block (kd.trkd.tau0, kd.dkd.beta, kd.trkd.terms: {tm: 1, nckd: 8} …). imlkd
    is our reconstruction of Yang et al. 2024 from its abstract (Integrated-Gradients re-weighted
    input, instance/class/batch levels) and always runs the teacher online.
    Writes what `trkd train` writes; the resolved kd: block records the method and the teacher.

    From inside a recipe folder `trkd distill --teacher exp/T --method trkd` is enough: --data
    defaults to the teacher's training data (the --data of the command in TEACHER/config.yaml),
    --config to the recipe's student yaml (see --config), and --exp to STUDENT_METHOD beside the
    teacher (STUDENT: the config's name); each default is printed as it is used.
    """
    config, data, exp = _defaults(teacher, config, method, data, exp)  # before torch: errors come fast
    ctx.params.update(config=config, data=data, exp=exp)  # the recorded command names what was used
    import shlex

    from trkd.commands.train import _command_line
    from trkd.config import QUICK
    from trkd.commands.options import parse_sets
    from trkd.distill.run import QUICK_KD, distill

    overrides = {**QUICK, **QUICK_KD} if quick else {}
    if seed is not None:
        overrides["train.seed"] = seed
    if precision is not None:
        overrides["train.precision"] = precision
    overrides.update(parse_sets(sets))
    params = ctx.params.pop("sets")  # a repeatable option: re-spelled below, once per value
    command = _command_line(ctx) + "".join(f" --set {shlex.quote(s)}" for s in params)
    distill(teacher, config, method, data, exp, online, resume, device, overrides, checkpoint, dump,
            command=command)


def _defaults(teacher: Path, config: Optional[Path], method: str, data: Optional[Path],
              exp: Optional[Path]) -> Tuple[Path, Path, Path]:
    """--config, --data and --exp, the defaults resolved as the help says, each printed."""
    def used(option: str, value: Path, why: str) -> Path:
        typer.echo(f"trkd distill: {option} {value} ({why})", err=True)
        return value

    if data is None:
        data = used("--data", _teacher_data(teacher), f"the teacher's, from {teacher / 'config.yaml'}")
    if config is None:
        config = used("--config", *_student_config())
    if exp is None:
        exp = used("--exp", teacher.parent / f"{config.stem}_{method}",
                   "the default, STUDENT_METHOD beside the teacher")
    return config, data, exp


def _teacher_data(teacher: Path) -> Path:
    """The --data of the command recorded in TEACHER/config.yaml, checked to exist from here."""
    import shlex

    from trkd.utils.typed_yaml import read_yaml

    path = teacher / "config.yaml"
    if not path.is_file():
        raise InputError(path, "missing: --teacher must be a trained model dir (trkd train's --exp)")
    command = read_yaml(path)[0].get("command") or ""
    words = shlex.split(command)
    found = [b for a, b in zip(words, words[1:]) if a == "--data"] + \
        [w.split("=", 1)[1] for w in words if w.startswith("--data=")]
    if not found:
        raise InputError(path, "records no --data in its command: pass --data")
    data = Path(found[-1])
    if not data.is_dir():
        raise InputError(path, f"the teacher's data dir {data} (from its command) is not a folder here, in "
                         f"{Path.cwd()}: run from the folder it was trained in, or pass --data")
    return data


def _student_config() -> Tuple[Path, str]:
    """STUDENT_YAML, else conf/S.yaml where ./run.sh declares student=S; and which it was."""
    import re

    if Path(STUDENT_YAML).is_file():
        return Path(STUDENT_YAML), "the default"
    run_sh = Path("run.sh")
    match = re.search(r"^student=[\"']?([^\s\"'#]+)", run_sh.read_text(), re.M) if run_sh.is_file() else None
    if match is None:
        raise InputError(None, f"no --config: neither {STUDENT_YAML} nor a student= line in ./run.sh (run from a "
                         "recipe folder, or pass --config)")
    return Path("conf") / f"{match.group(1)}.yaml", f"run.sh's student={match.group(1)}"


def confusion_sizes_cmd(
    dump: Path = typer.Argument(..., help="A teacher dump (trkd dump-logits' OUT, e.g. exp/teacher/logits)."),
    taus: str = typer.Option(" ".join(f"{t:g}" for t in TAU_GRID), "--taus",
                             help="τ values, space-separated."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="T of the teacher's softmax "
                                                "(default: kd.trkd.temperature's default)."),
    cutoff: Optional[str] = typer.Option(None, "--cutoff", help="conditional or joint (default: kd.trkd.cutoff's)."),
    max_chunks: Optional[int] = typer.Option(None, "--max-chunks", help="At most this many chunks, evenly spaced "
                                             "over the grid (default: every chunk)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The dumped data dir, for utt2spk (default: the one "
                                        "the dump's meta.yaml names)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the rows as JSON lines here."),
) -> None:
    """|F(τ)| of TRKD's confusion set over a teacher dump's chunks: mean, spread and quantiles per τ.

    Ranks each chunk's non-targets as the students' loss does; with a top-K dump a row whose F
    does not fit in K is cut to K (the share of such rows is printed).
    """
    from trkd.study.confusion_sizes import confusion_sizes, table, write_records

    try:
        values = [float(t) for t in taus.split()]
    except ValueError:
        raise InputError(None, f"--taus {taus!r}: expected numbers separated by spaces") from None
    if not values or not all(0 < t < 1 for t in values):
        raise InputError(None, f"--taus {taus!r}: every τ must lie in (0, 1)")
    records = confusion_sizes(dump, values, temperature, cutoff, max_chunks, data)
    typer.echo(table(records), nl=False)
    if out is not None:
        write_records(records, out)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to the `trkd` app."""
    app.command("dump-logits")(dump_logits_cmd)
    app.command("distill")(distill_cmd)
    app.command("confusion-sizes")(confusion_sizes_cmd)
