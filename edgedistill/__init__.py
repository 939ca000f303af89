"""edgedistill: teacher in, device-ready student bundle and an honest teacher-vs-student report out.

The Python API mirrors the CLI::

    import edgedistill as ed
    recipe = ed.load_recipe("examples/quickstart.toml")
    ed.run(recipe, "runs/quickstart")          # distill -> export -> bench
    ed.distill(recipe, "runs/quickstart")      # or one stage at a time
    ed.export(recipe, "runs/quickstart", targets=["phone"])
    ed.bench(recipe, "runs/quickstart")
    ed.report(["runs/quickstart", "runs/other"], "runs/comparison")
    ed.predict("runs/quickstart/bundles/phone", ["A gorgeous, witty movie."])   # torch-free runtime
"""

__version__ = "0.1.0"

from .api import bench, distill, export, load_recipe, predict, report, run, verify_bundle  # noqa: E402

__all__ = ["__version__", "bench", "distill", "export", "load_recipe", "predict", "report", "run", "verify_bundle"]
