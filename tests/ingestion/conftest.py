"""Helpers for the ingestion service tests: a running experiment built straight from the models."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from emailexp.models import Experiment, Variant


def add_experiment(session, *, status="running", timezone="America/New_York", window=14,
                   variants=(("A", "Subject A"), ("B", "Subject B"))) -> Experiment:
    experiment = Experiment(name="subject test", status=status, timezone=timezone, attribution_window_days=window,
                            started_at=datetime(2026, 11, 1, tzinfo=UTC) if status != "draft" else None)
    experiment.variants = [Variant(key=key, subject=subject, is_control=i == 0) for i, (key, subject)
                           in enumerate(variants)]
    session.add(experiment)
    session.flush()
    return experiment


@pytest.fixture
def experiment_factory(session):
    def make(**kwargs) -> Experiment:
        experiment = add_experiment(session, **kwargs)
        session.commit()
        return experiment
    return make
