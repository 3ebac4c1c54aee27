"""esc50kit: an honest, fast and teachable pipeline for ESC-50 sound classification.

Data flows one way: audio on disk -> metadata table (:mod:`esc50kit.data`) -> official
fold split, audited (:mod:`esc50kit.splits`) -> cached features (:mod:`esc50kit.features`,
:mod:`esc50kit.cache`) -> model per fold (:mod:`esc50kit.models`, :mod:`esc50kit.training`)
-> a run folder of predictions and metrics (:mod:`esc50kit.experiment` writes it,
:mod:`esc50kit.run_folder` reads it) -> figures and reports (:mod:`esc50kit.evaluation`,
:mod:`esc50kit.plots`). :mod:`esc50kit.chain` runs the four notebooks with papermill.
The README's Layout section gives one line per module. Importing the package does no work.
"""

__version__ = "0.1.0"
