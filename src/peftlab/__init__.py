"""peftlab: run, measure and compare ways of fine-tuning pretrained models.

Use the `peftlab` command (see `peftlab --help`) or `peftlab.run.run_experiment(RunConfig(...))` from Python.
"""

__version__ = "0.1.0"
