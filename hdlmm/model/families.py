"""Response families of the generalized linear mixed model: binomial (logit link, 0/1
outcomes or successes out of trials) and Poisson (log link). Both links are canonical,
so for η the linear predictor the score of a row is x (y − μ) and its information
x xᵀ W with W = Var(y) (m p (1 − p), or μ): what :mod:`hdlmm.model.glmm` needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["Family", "FAMILIES", "get_family", "MAX_ETA"]

#: a Poisson log-mean beyond which exp(η) is not evaluated (e^60 ≈ 1e26 events: no data
#: are there, but a trial step of an optimiser can be, and its weights must stay finite)
MAX_ETA = 60.0


@dataclass(frozen=True)
class Family:
    """A canonical-link family: ``name``, and its mean, variance and log-likelihood as
    functions of η (with ``trials`` m for the binomial; 1 for the Poisson)."""

    name: str

    def mean(self, eta: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """μ = m · logistic(η) (binomial) or exp(η) (Poisson)."""
        if self.name == "binomial":
            return trials * special.expit(eta)
        return np.exp(np.minimum(eta, MAX_ETA))

    def variance(self, eta: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """Var(y) = m p (1 − p) (binomial) or μ (Poisson): the IRLS weight W."""
        if self.name == "binomial":
            p = special.expit(eta)
            return trials * p * (1.0 - p)
        return np.exp(np.minimum(eta, MAX_ETA))

    def variance_derivative(self, eta: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """dW/dη: m p (1 − p)(1 − 2p) (binomial) or μ (Poisson)."""
        if self.name == "binomial":
            p = special.expit(eta)
            return trials * p * (1.0 - p) * (1.0 - 2.0 * p)
        return np.exp(np.minimum(eta, MAX_ETA))

    def loglik(self, y: np.ndarray, eta: np.ndarray, trials: np.ndarray,
               const: bool = True) -> np.ndarray:
        """log p(y | η) of each row, with the normalising constants (as R's dbinom and
        dpois, hence lme4's logLik) or, ``const=False``, without them (the part that
        depends on η: what an optimiser over η needs; :meth:`log_const` is the rest)."""
        if self.name == "binomial":  # y log p + (m − y) log(1 − p), log p = −log(1 + e^{−η})
            kernel = y * eta - trials * np.logaddexp(0.0, eta)
        else:
            kernel = y * eta - np.exp(np.minimum(eta, MAX_ETA))
        return kernel + self.log_const(y, trials) if const else kernel

    def log_const(self, y: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """The normalising constant of log p(y | η) of each row: log C(m, y) (binomial)
        or −log y! (Poisson)."""
        if self.name == "binomial":
            return (special.gammaln(trials + 1) - special.gammaln(y + 1)
                    - special.gammaln(trials - y + 1))
        return -special.gammaln(y + 1)

    def check_response(self, y: np.ndarray, trials: np.ndarray) -> None:
        """Counts of the family: 0 ≤ y ≤ m integers (binomial), y ≥ 0 integers
        (Poisson), or a message naming the problem."""
        if np.any(y < 0) or np.any(y != np.round(y)):
            raise ValueError(f"a {self.name} response must be counts (non-negative "
                             f"integers); got values such as {y[(y < 0) | (y != np.round(y))][:3]}")
        if self.name == "binomial" and np.any(y > trials):
            raise ValueError("a binomial response has more successes than trials in "
                             f"{int(np.sum(y > trials))} rows; check the trials column")


FAMILIES = ("binomial", "poisson")


def get_family(name: str) -> Family:
    """The :class:`Family` called ``name``."""
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {name!r}")
    return Family(name)
