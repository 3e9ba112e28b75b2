"""`emailexp demo`: a simulated history with planted, documented effects (docs/demo-data.md).

``generate`` builds the rows (pure numpy, fixed seed); ``load`` writes them (a service: takes a
Session or Connection and never commits).
"""
