"""Pure statistics for e-mail experiments: counts in, frozen result dataclasses out.

Imports numpy, scipy, statsmodels, pandas and the standard library only.
"""

from .types import ArmCounts, DailyCounts
from .proportions import ProportionEstimate, estimate_proportion, wilson_interval
from .compare import (
    HomogeneityTest,
    ProportionComparison,
    adjust_p_values,
    chi_square_homogeneity,
    compare_proportions,
    katz_ratio_interval,
    newcombe_difference_interval,
    two_proportion_test,
)
from .bayes import BayesArm, BayesianComparison, beta_binomial_best
from .sequential import SequentialLook, SequentialTest, msprt_p_values, sequential_difference_test
from .srm import SampleRatioTest, sample_ratio_test
from .power import (
    MinimumDetectableEffect,
    SampleSizePlan,
    days_to_reach,
    minimum_detectable_effect,
    sample_size_per_arm,
    two_proportion_power,
)
from .outcomes import AmountPerSend, amount_per_send
from .verdict import ArmSummary, ExperimentAnalysis, Verdict, analyze_experiment, compare_to_control
from .regression import *  # noqa
