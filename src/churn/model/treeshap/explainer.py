"""The :class:`FastTreeShap` explainer: a booster's per-leaf tables and the calls of its kernels.

The method is described in the package docstring (:mod:`churn.model.treeshap`); when a call
uses this explainer rather than LightGBM is decided in :mod:`churn.model.treeshap.dispatch`.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .kernel import compile_for, get_kernel, get_predict_kernel, numba_available
from .tables import (
    MAX_SUPPORTED_UNIQUE_DEPTH,
    FlatEnsemble,
    PredictionLayout,
    UnsupportedModelError,
    build_prediction_layout,
    flatten_ensemble,
)

if TYPE_CHECKING:
    import lightgbm as lgb


logger = logging.getLogger(__name__)

DEFAULT_MAX_UNIQUE_DEPTH = 12
DEFAULT_MAX_TABLE_BYTES = 1 << 30
# Rows per parallel work item. The kernel runs every tree over a block of rows before moving
# on, so a tree's nodes and tables are loaded once per block; larger blocks amortise that
# better (it matters for deep trees, whose tables are large) until the block's input and
# output rows (256 x 71 doubles is ~145 KiB each) no longer fit in L2.
DEFAULT_BLOCK_ROWS = 256
# Rows per work item of the prediction kernel: its rows are copied feature-major into a block
# (1024 x 109 doubles, under 1 MiB); 1024 was fastest of 64-4096 on the model above.
DEFAULT_PREDICT_BLOCK_ROWS = 1024
# Rows of a matrix that is not C-contiguous float64 converted for the prediction kernel at a
# time (64 blocks of rows per call).
PREDICT_CONVERT_ROWS = 64 * DEFAULT_PREDICT_BLOCK_ROWS


class FastTreeShap:
    """Exact path-dependent TreeSHAP for a LightGBM booster, equal to ``pred_contrib``.

    The model is parsed and the per-leaf tables are built once, in the constructor; the object
    is then reused across batches (and is safe to share between threads). It is a snapshot: a
    booster changed afterwards (more training, ``set_leaf_output``) needs a new instance.

    Attributes:
        num_iteration: Iterations explained; ``None`` means the same default as
            ``booster.predict`` (the best iteration if early stopping recorded one, else all).
        n_features: Number of model input columns.
        fallback_reason: Why ``pred_contrib`` is used instead of the fast kernel, or ``None``.
    """

    def __init__(
        self,
        booster: lgb.Booster,
        *,
        num_iteration: int | None = None,
        max_unique_depth: int = DEFAULT_MAX_UNIQUE_DEPTH,
        max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> None:
        """Parse the booster and precompute the per-leaf subset tables.

        Args:
            booster: A trained LightGBM booster (binary or regression: one tree per iteration).
            num_iteration: Number of iterations to explain, as in ``booster.predict``.
            max_unique_depth: Largest number of distinct features on one leaf path handled by
                the tables (each such leaf holds ``2**d`` doubles); deeper models fall back.
            max_table_bytes: Memory cap for all tables together; larger models fall back.
            block_rows: Rows per parallel work item of the kernel.
        """
        if not 1 <= max_unique_depth <= MAX_SUPPORTED_UNIQUE_DEPTH:
            raise ValueError(
                f"max_unique_depth must be in 1..{MAX_SUPPORTED_UNIQUE_DEPTH}, "
                f"got {max_unique_depth}"
            )
        self._booster: lgb.Booster | None = booster
        self._booster_ref = weakref.ref(booster)
        self.num_iteration = num_iteration
        self.n_features = int(booster.num_feature())
        self.block_rows = max(1, int(block_rows))
        self.fallback_reason: str | None = None
        self._ensemble: FlatEnsemble | None = None
        self._layout: PredictionLayout | None = None  # built on the first predict_raw
        if not numba_available():
            self.fallback_reason = "numba is not installed or does not import"
        else:
            try:
                self._ensemble = flatten_ensemble(
                    booster.dump_model(num_iteration=num_iteration),
                    max_unique_depth=max_unique_depth,
                    max_table_bytes=max_table_bytes,
                    model_text=lambda: booster.model_to_string(num_iteration=num_iteration),
                )
            except UnsupportedModelError as exc:
                self.fallback_reason = str(exc)
        if self.fallback_reason is not None:
            logger.info("FastTreeShap uses LightGBM pred_contrib: %s", self.fallback_reason)

    @property
    def booster(self) -> lgb.Booster:
        """The explained booster."""
        booster = self._booster if self._booster is not None else self._booster_ref()
        if booster is None:  # only for cache-held explainers, which die with their booster
            raise RuntimeError("the explained booster no longer exists")
        return booster

    @property
    def backend(self) -> str:
        """``"numba"`` for the table kernel, ``"lightgbm"`` for the pred_contrib fallback."""
        return "lightgbm" if self._ensemble is None else "numba"

    @property
    def table_bytes(self) -> int:
        """Memory held by the precomputed tables (0 when falling back)."""
        return 0 if self._ensemble is None else self._ensemble.table_bytes

    def _check_matrix(self, X: np.ndarray) -> np.ndarray:
        """Return ``X`` as an array, or raise ValueError unless 2-D with ``n_features`` columns."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"expected a 2-D array with {self.n_features} columns, got shape {X.shape}"
            )
        return X

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """Return SHAP values laid out exactly like ``booster.predict(X, pred_contrib=True)``.

        Args:
            X: ``(n, n_features)`` numeric matrix in booster feature order (e.g.
                :meth:`ChurnModel.prepare`); NaN means missing.

        Returns:
            ``(n, n_features + 1)`` float64 array: per-feature contributions (raw score,
            log-odds for binary models), then the expected value (base) in the last column.

        Raises:
            ValueError: If ``X`` is not 2-D with ``n_features`` columns.
        """
        return self.shap_values_and_raw(X)[0]

    def shap_values_and_raw(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return :meth:`shap_values` and :meth:`predict_raw` of ``X`` from one walk of the trees.

        The kernel finds each row's leaf from the split tests it makes anyway and sums the
        leaves in LightGBM's order, so the raw scores equal ``booster.predict(X,
        raw_score=True)`` bit for bit, as :meth:`predict_raw`'s do; without the kernel (a
        fallback) both come from LightGBM.

        Raises:
            ValueError: If ``X`` is not 2-D with ``n_features`` columns.
        """
        X = self._check_matrix(X)
        if self._ensemble is None:
            return (
                lightgbm_contributions(self.booster, X, self.num_iteration),
                lightgbm_raw_scores(self.booster, X, self.num_iteration),
            )
        # float32 -> float64 is exact, like LightGBM's own conversion.
        X = np.ascontiguousarray(X, dtype=np.float64)
        flat = self._ensemble
        out = np.zeros((X.shape[0], self.n_features + 1), dtype=np.float64)
        raw = np.zeros(X.shape[0], dtype=np.float64)
        if X.shape[0] and flat.slot_meta.size:
            get_kernel()(*self._shap_arguments(X, out, raw))
        elif X.shape[0]:  # only single-leaf trees: nothing to explain, the leaves still add up
            raw = self.predict_raw(X)
        out[:, -1] = flat.expected_value
        return out, raw

    def _shap_arguments(self, X: np.ndarray, out: np.ndarray, raw: np.ndarray) -> tuple[Any, ...]:
        """The TreeSHAP kernel's arguments: one place, so compiling ahead sees the real types."""
        flat = self._ensemble
        assert flat is not None
        return (
            X,
            out,
            self.block_rows,
            flat.node_start,
            flat.slot_start,
            flat.node_word,
            flat.node_threshold,
            flat.node_cat_start,
            flat.node_cat_words,
            flat.cat_bits,
            flat.slot_meta,
            flat.slot_target,
            flat.slot_coef,
            flat.tables,
            flat.max_tree_nodes,
            raw,
            flat.leaf_start,
            flat.leaf_value,
        )

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Return raw scores equal, bit for bit, to ``booster.predict(X, raw_score=True)``.

        The same trees, decision rule and order of additions as LightGBM (see
        :func:`churn.model.treeshap.kernel.get_predict_kernel`); without the kernel (a model
        the tables cannot hold, no numba) it calls ``booster.predict`` itself.

        Args:
            X: ``(n, n_features)`` numeric matrix in booster feature order; NaN means missing.

        Returns:
            ``(n,)`` float64 raw scores (log-odds for a binary model).

        Raises:
            ValueError: If ``X`` is not 2-D with ``n_features`` columns.
        """
        X = self._check_matrix(X)
        if self._ensemble is None:
            return lightgbm_raw_scores(self.booster, X, self.num_iteration)
        out = np.zeros(X.shape[0], dtype=np.float64)
        # The kernel reads float64 rows. Another matrix (the survival head's float32
        # person-periods, millions of rows at a million customers) is converted a slice at a time,
        # so no float64 copy of the whole of it is made; float32 -> float64 is exact, like
        # LightGBM's own conversion, and rows are independent, so the scores are the same.
        whole = X.dtype == np.float64 and X.flags.c_contiguous
        step = max(1, X.shape[0]) if whole else PREDICT_CONVERT_ROWS
        kernel = get_predict_kernel()
        for start in range(0, X.shape[0], step):
            kernel(
                *self._predict_arguments(
                    np.ascontiguousarray(X[start : start + step], dtype=np.float64),
                    out[start : start + step],
                )
            )
        return out

    def _predict_arguments(self, X: np.ndarray, out: np.ndarray) -> tuple[Any, ...]:
        """The prediction kernel's arguments (its layout built on first use)."""
        assert self._ensemble is not None
        if self._layout is None:
            self._layout = build_prediction_layout(self._ensemble)
        layout = self._layout
        return (
            X,
            out,
            DEFAULT_PREDICT_BLOCK_ROWS,
            layout.node_start,
            layout.n_internal,
            layout.depth,
            layout.node_word,
            layout.node_threshold,
            layout.node_cat_start,
            layout.node_cat_words,
            self._ensemble.cat_bits,
            layout.leaf_start,
            layout.leaf_value,
        )

    def compile_kernels(self, *, contributions: bool = True, raw_scores: bool = True) -> None:
        """Compile the numba kernels :meth:`shap_values` and :meth:`predict_raw` call, without
        running them (nothing to do when this explainer falls back to LightGBM).

        Numba compiles a kernel on its first call, for the argument types of that call; this
        compiles it for exactly the types those methods pass (float64 C-ordered rows and this
        explainer's arrays), so their first call finds it ready. See :func:`start_compiling`.

        Args:
            contributions: Compile the TreeSHAP kernel.
            raw_scores: Compile the prediction kernel.
        """
        if self._ensemble is None:
            return
        n = self.n_features
        if contributions:
            compile_for(
                get_kernel(),
                self._shap_arguments(np.zeros((1, n)), np.zeros((1, n + 1)), np.zeros(1)),
            )
        if raw_scores:
            compile_for(
                get_predict_kernel(), self._predict_arguments(np.zeros((1, n)), np.zeros(1))
            )


def lightgbm_contributions(
    booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None
) -> np.ndarray:
    """LightGBM's own ``pred_contrib`` as float64, laid out like ``FastTreeShap.shap_values``."""
    raw = booster.predict(X, pred_contrib=True, num_iteration=num_iteration)
    return np.asarray(raw, dtype=np.float64)


def lightgbm_raw_scores(
    booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None
) -> np.ndarray:
    """LightGBM's own raw scores as float64 (``booster.predict(..., raw_score=True)``)."""
    raw = booster.predict(X, raw_score=True, num_iteration=num_iteration)
    return np.asarray(raw, dtype=np.float64)
