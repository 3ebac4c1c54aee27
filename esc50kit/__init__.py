"""esc50kit: an honest, fast and teachable pipeline for ESC-50 sound classification.

Data flows one way: audio on disk -> metadata table (:mod:`esc50kit.data`) -> official
fold split (:mod:`esc50kit.splits`) -> cached features (:mod:`esc50kit.features`) ->
model per fold (:mod:`esc50kit.models`, :mod:`esc50kit.training`) -> predictions and
metrics (:mod:`esc50kit.evaluation`). Importing the package does no work.
"""

__version__ = "0.1.0"
