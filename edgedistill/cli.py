"""The ``edgedistill`` command: a thin shell over :mod:`edgedistill.api`."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import click

from . import __version__
from .cli_llm import generate, llm
from .cli_options import EXPECT_ID, PUBLIC_KEY, out_opt, recipe_arg
from .errors import EdgedistillError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgedistill")
def cli():
    """Distil a pretrained transformer into a compact student, export it for phones, tablets and
    watches, and benchmark student against teacher.

    \b
    The whole path on the built-in demo (real teacher, real text, ~6 min on 2 cores):
      edgedistill run
    Stage by stage, on your own recipe:
      edgedistill distill my.toml && edgedistill export my.toml && edgedistill bench my.toml
    """


@cli.command()
@recipe_arg
@out_opt
def run(recipe, out):
    """Distil, export and benchmark in one go; print the comparison table.

    \b
    Examples:
      edgedistill run                                  # the quickstart demo
      edgedistill run examples/quickstart.toml -o runs/qs
      edgedistill run examples/llm/recipe.toml -o runs/llm    # kind = "llm": distill, export, bench, report
    """
    from . import api
    from .report.summary import print_summary

    result = api.run(recipe, out)
    if str(result.get("schema", "")).startswith("edgedistill.llm-report"):
        h = result["headline"]
        click.echo(f"held-out ppl: teacher {h['teacher_ppl']:.2f}, student {h['student_ppl']:.2f}; "
                   f"size ratio {h.get('size_ratio', float('nan')):.2f}x; report in {out or 'runs/' + result['recipe']}"
                   "/report/llm_report.md")
        return
    print_summary(result)


@cli.command()
@recipe_arg
@out_opt
def distill(recipe, out):
    """Distil the teacher into a student (writes OUT/student/, a Hugging Face folder + distill.json).

    \b
    Example:
      edgedistill distill examples/quickstart.toml -o runs/qs
    """
    from . import api

    click.echo(api.distill(recipe, out))


@cli.command()
@recipe_arg
@out_opt
@click.option("--target", "-t", "targets", multiple=True,
              help="Target name (see 'edgedistill targets list') or a target .toml; repeatable. Default: the recipe's.")
@click.option("--quant", default=None,
              help="Quantization scheme overriding the target's: ONNX fp32, int8-dynamic, int8-static, int4-weight, "
                   "fp16; ExecuTorch et-fp32, et-int8, et-8da4w, et-int8-static.")
@click.option("--student", type=click.Path(file_okay=False, exists=True), default=None,
              help="Export this HF folder instead of OUT/student.")
@click.option("--zip", "zip_bundle", is_flag=True, help="Also write OUT/bundles/TARGET.zip (one file to ship).")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Sign every bundle with this Ed25519 private key (PEM; make one with 'edgedistill bundle keygen').")
def export(recipe, out, targets, quant, student, zip_bundle, sign_key):
    """Export the student to ONNX per target, gate it on parity, write OUT/bundles/TARGET/.

    \b
    Examples:
      edgedistill export examples/quickstart.toml -o runs/qs --target phone
      edgedistill export examples/quickstart.toml -o runs/qs --target watch --quant int8-static --zip
      edgedistill export examples/quickstart.toml -o runs/qs --sign keys/release.pem --zip
    """
    from . import api

    for path in api.export(recipe, out, targets=list(targets) or None, quant=quant, student=student,
                           zip_bundle=zip_bundle, sign=sign_key):
        click.echo(path)


@cli.command()
@recipe_arg
@out_opt
@click.option("--target", "-t", "targets", multiple=True,
              help="Run folder: the target whose bundle and thread count to use (default: the first). With --model: "
                   "device profiles to model (repeatable; default: the recipe's [bench] targets, else all).")
@click.option("--model", "-m", "models", multiple=True,
              help="Benchmark this model instead of a run folder: a Hugging Face folder, a .onnx or .pte file, or "
                   "a bundle folder (repeatable); native:BUNDLE runs a .pte bundle in the native C++ runtime.")
@click.option("--teacher", default=None, help="With --model: the reference model for the ratios (any model kind).")
@click.option("--tokenizer", type=click.Path(file_okay=False), default=None,
              help="With --model: tokenizer folder for models that carry none (a bare .onnx or .pte file).")
def bench(recipe, out, targets, models, teacher, tokenizer):
    """Benchmark teacher vs student: size, latency, peak memory, quality; writes OUT/report/.

    \b
    Examples:
      edgedistill bench examples/quickstart.toml -o runs/qs
      edgedistill bench --model runs/qs/bundles/phone --model runs/qs/student --teacher TEACHER_DIR -o runs/cmp
    With --model, the recipe (default: the quickstart) gives the data, the latency grid and the runs.
    """
    from . import api
    from .report.summary import print_summary

    if not models and (teacher or tokenizer):
        raise click.UsageError("--teacher and --tokenizer go with --model")
    if not models and len(targets) > 1:
        raise click.UsageError("a run folder is benchmarked for one --target at a time")
    print_summary(api.bench(recipe, out, targets[0] if targets and not models else None, models=list(models),
                            teacher=teacher, targets=list(targets), tokenizer=tokenizer))


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "-o", type=click.Path(file_okay=False), default="runs/comparison", show_default=True,
              help="Folder for comparison.html and comparison.md.")
def report(runs, out):
    """Merge the bench reports of several runs into one comparison page.

    \b
    Example:
      edgedistill report runs/quickstart runs/my-3-layer-student -o runs/comparison
    """
    from . import api

    for path in api.report(list(runs), out).values():
        click.echo(path)


@cli.group()
def targets():
    """Device target profiles (phone, tablet, watch, ...)."""


@targets.command("list")
def targets_list():
    """List the built-in targets.

    \b
    Example:
      edgedistill targets list
    """
    from .targets import list_targets, load_target

    for name in list_targets():
        t = load_target(name)
        click.echo(f"{name:16s} {t.export.quantization:13s} {t.description}")


@targets.command("show")
@click.argument("name")
def targets_show(name):
    """Show one target with every constant, its range, kind and source.

    \b
    Examples:
      edgedistill targets show watch
      edgedistill targets show ./my-device.toml
    """
    from .targets import load_target

    t = load_target(name)
    d = t.device
    click.echo(f"{t.name}: {t.description}\n  file: {t.path}")
    click.echo(f"  device: {d.reference_device} ({d.soc}); CPU {d.cpu}; {d.threads} threads ({d.thread_note}); "
               f"ISA [{', '.join(d.isa) or 'none'}]; RAM {d.ram_gb:g} GB")
    click.echo(f"  export: {t.export.backend}, {t.export.quantization}, fp16 {'allowed' if t.export.fp16 else 'no'}")
    if t.export.note:
        click.echo(f"          {t.export.note}")
    for key, c in {**t.constants, "budget.model_mb": t.budget.model_mb, "budget.memory_mb": t.budget.memory_mb}.items():
        rng = f" [{c.lo:g}-{c.hi:g}]" if c.lo is not None and c.hi is not None else ""
        click.echo(f"  {key:18s} {c.value:g}{rng} {c.unit:7s} {c.kind:8s} {c.source}")
    for ref, text in t.sources.items():
        click.echo(f"  {ref}: {text}")


@cli.group()
def teacher():
    """Build teachers for distillation."""


@teacher.command("classifier")
@recipe_arg
@click.option("--out", "-o", type=click.Path(file_okay=False), default="runs/sentiment-teacher", show_default=True,
              help="Folder for the classifier (a Hugging Face ...ForSequenceClassification folder).")
@click.option("--unfreeze-layers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Top encoder blocks trained with the head (0 = frozen encoder).")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, max=1), default=0.0, show_default=True,
              help="AdamW rate; 0 = 2e-3 for a frozen encoder, 5e-5 with unfrozen blocks.")
@click.option("--seed", type=int, default=0, show_default=True)
def teacher_classifier(recipe, out, unfreeze_layers, epochs, learning_rate, seed):
    """Turn the recipe's encoder into a classifier teacher (head on the labelled train split).

    The classes are the labels of the recipe's data (names or integers in its label field; the sign of
    the score when there are none, as for VADER); their names go into the checkpoint's id2label and on
    to every student and bundle. See docs/tasks.md for the data fields.

    \b
    Examples:
      edgedistill teacher classifier                       # packaged all-MiniLM-L6-v2 on VADER
      edgedistill teacher classifier my-data.toml -o runs/my-teacher
      edgedistill teacher classifier --unfreeze-layers 2 -o runs/sentiment-teacher-ft2
    """
    from . import api

    rec = api.teacher_classifier(recipe, out, unfreeze_layers=unfreeze_layers, epochs=epochs, seed=seed,
                                 learning_rate=learning_rate)
    click.echo(f"{out}: validation accuracy {rec['val_accuracy']:.4f}, test accuracy {rec['test_accuracy']:.4f}")


@cli.group()
def bundle():
    """Inspect and verify app bundles."""


@cli.group()
def native():
    """The native (C/C++) runtime for apps: build it against the installed executorch SDK."""


@native.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when a build of these sources is cached.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Parallel compile jobs.")
def native_build_cmd(force, jobs):
    """Compile native/ (libedgedistill.so, edgedistill-native) once per source version; prints its folder.

    \b
    Example:
      edgedistill native build && $(edgedistill native build)/edgedistill-native verify runs/quickstart/bundles/phone
    """
    from .native_build import build

    click.echo(str(build(force=force, jobs=jobs)))


@bundle.command("verify")
@click.argument("path", type=click.Path(exists=True))
@EXPECT_ID
@PUBLIC_KEY
def bundle_verify(path, expect_id, public_key):
    """Check every file of a bundle (folder or .zip) against the sha256 in its manifest, then load
    its tokenizer and model as an app would; prints the bundle id (sha256 of the manifest) to pin in apps.

    \b
    Examples:
      edgedistill bundle verify runs/quickstart/bundles/phone
      edgedistill bundle verify runs/quickstart/bundles/phone.zip --public-key keys/release.pem.pub
    """
    from . import api

    m = api.verify_bundle(path, expect_id=expect_id, public_key=public_key)
    click.echo(f"ok: {len(m['files'])} files verified ({m['quantization']['scheme']}, target {m['target']['name']}, "
               f"{m.get('backend', 'onnxruntime')})")
    click.echo(f"id: {m['bundle_id']}" + ("  (signature ok)" if public_key else ""))


@bundle.command("sign")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--key", "key", type=click.Path(dir_okay=False, exists=True), required=True,
              help="Ed25519 private key (PEM), e.g. from 'edgedistill bundle keygen'.")
@click.option("--zip", "zip_bundle", is_flag=True, help="Also rewrite PATH.zip so that it carries the signature.")
def bundle_sign(path, key, zip_bundle):
    """Sign a bundle folder: writes signature.json (an Ed25519 signature of the bundle id).

    \b
    Example:
      edgedistill bundle sign runs/quickstart/bundles/phone --key keys/release.pem --zip
    """
    from . import api

    click.echo(f"signed: {api.sign_bundle(path, key, zip_bundle=zip_bundle)}")


@bundle.command("keygen")
@click.argument("path", type=click.Path(dir_okay=False))
def bundle_keygen(path):
    """Make an Ed25519 key pair for signing bundles: PATH (private, keep it secret) and PATH.pub.

    \b
    Example:
      edgedistill bundle keygen keys/release.pem
    """
    from . import api

    private, public = api.keygen(path)
    click.echo(f"private key: {private}\npublic key: {public}")


@cli.command()
@click.option("--bundle", "-b", "bundle_path", type=click.Path(exists=True), required=True,
              help="Bundle folder or .zip (from 'edgedistill export').")
@click.argument("texts", nargs=-1, required=True)
@EXPECT_ID
@PUBLIC_KEY
@click.option("--json", "as_json", is_flag=True, help="Print the full results as JSON.")
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=None,
              help="Inference threads (default: the bundle target's).")
@click.option("--no-truncate", is_flag=True, help="Refuse texts longer than the bundle's max_length.")
@click.option("--exit-threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Classifier bundles with early exits: answer from the first exit whose top probability "
                   "reaches this (0..1).")
def predict(bundle_path, texts, expect_id, public_key, as_json, threads, no_truncate, exit_threshold):
    """Run a bundle on TEXTS with the torch-free runtime (embeddings, or labels and scores).

    \b
    Examples:
      edgedistill predict --bundle runs/quickstart/bundles/phone "A gorgeous, witty movie." "Dull."
      edgedistill predict --bundle runs/quickstart/bundles/phone.zip --json "Great!"
    """
    import json

    from . import api

    results = api.predict(bundle_path, list(texts), threads=threads, truncate=not no_truncate, expect_id=expect_id,
                          public_key=public_key, exit_threshold=exit_threshold)
    if as_json:
        click.echo(json.dumps([{"text": t, **r} for t, r in zip(texts, results, strict=True)]))
        return
    for text, r in zip(texts, results, strict=True):
        if "embedding" in r:
            v = r["embedding"]
            head = ", ".join(f"{x:+.3f}" for x in v[:4])
            click.echo(f"[{head}, ...] dim {len(v)} norm {sum(x * x for x in v) ** 0.5:.3f}  {text}")
        else:
            # The top class and score first, then every class's probability (up to 5, most likely first).
            rest = sorted(r["scores"].items(), key=lambda kv: -kv[1])[:5]
            where = f" (exit {r['exit']})" if "exit" in r else ""
            click.echo(f"{r['label']}\t{r['score']:.3f}\t{text}\t[" + ", ".join(f"{k} {v:.3f}" for k, v in rest)
                       + f"]{where}")


cli.add_command(llm)
cli.add_command(generate)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edgedistill", standalone_mode=False)
    except EdgedistillError as e:
        click.echo(f"edgedistill: error: {e}", err=True)
        return e.exit_code
    except ModuleNotFoundError as e:
        # A runtime-only install ('edgedistill[runtime]') lacks the training stack.
        extra = "runtime" if (e.name or "").split(".")[0] in ("onnxruntime", "tokenizers", "numpy") else "full"
        click.echo(f"edgedistill: error: this command needs the Python package {e.name!r}, which this install "
                   f"lacks; pip install 'edgedistill[{extra}]' (for 'full', pip install torch==2.13.0 first)", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("edgedistill: interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("edgedistill: interrupted", err=True)
        return 130
    except OSError as e:
        # A library writing on its own (an exporter, a quantizer) can fill the disk too; its partial files
        # are temporaries of ours that the failing context already removed.
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from .fileutil import disk_full_error

        where = Path(e.filename).parent if e.filename else Path.cwd()
        click.echo(f"edgedistill: error: {disk_full_error(where)}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
