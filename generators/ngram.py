"""n-gram language model: the theory model of text collapse.

Why hand-written: the model is counting, and madlab needs what libraries (nltk.lm, kenlm) do not
give together: a flat array state (safetensors), vectorised seeded sampling of thousands of
sequences with temperature, and the exact per-token log-likelihood for perplexity.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.core.tokenizer import PAD, lengths
from madlab.plugins.generator import Generator, Params


class NGramGenerator(Generator):
    """n-gram LM (maximum likelihood, add-k smoothing); λ = sampling temperature.

    Fit: counts of every k-gram, k = 1..order, over the training rows with ``order - 1`` boundary
    ids (``vocab_size``) in front and one boundary id after a row that ended (a row that filled
    the context was cut, so no end is counted). Next-token probability in a context c:
    (count(c, w) + add_k) / (count(c) + add_k · (vocab_size + 1)) over the vocabulary plus the end
    marker; a context never seen followed by anything backs off to its longest seen suffix (down to
    the unigram), so every step is a normalised distribution and the log-likelihood is exact.

    Sampling bias λ = temperature: p_λ(w | c) ∝ p(w | c)^(1/λ); λ = 1 ancestral sampling, λ → 0
    greedy (λ = 0 is argmax, ties to the smallest id). Sampling stops at the end marker or at
    the context length. With ``order: 1, add_k: 0`` on fixed-length rows, refitting on samples is
    multinomial (Wright–Fisher) resampling of the token counts.

    Model metrics (of the fitted unigram distribution over the vocabulary, end marker excluded):
    ``model_entropy`` (nats), ``model_support`` (tokens with non-zero probability),
    ``model_gini_simpson`` 1 − Σp²; for order ≥ 2 also ``model_ngram_support`` (distinct n-grams
    counted) and ``model_ngram_entropy`` (of the n-gram frequency table). On a synthetic source
    with a known truth and order 1, ``model_tv_truth`` and ``model_kl_truth`` = KL(p̂ ‖ p) exactly.
    Warm start adds the new counts to the loaded ones (continued maximum likelihood on all data seen).
    """

    name = "ngram"
    data_kinds = frozenset({"tokens"})
    cheap = True
    model_metric_names = frozenset({"model_entropy", "model_support", "model_gini_simpson", "model_ngram_support",
                                    "model_ngram_entropy", "model_tv_truth", "model_kl_truth"})

    class Params(Params):
        order: int = Field(3, ge=1, le=12)
        add_k: float = Field(0.0, ge=0.0, description="add-k (Lidstone) smoothing; 0 = maximum likelihood")

    def __init__(self, params, *, data_shape, num_classes=None, device="cpu", vocab_size: int | None = None):
        super().__init__(params, data_shape=data_shape, num_classes=num_classes, device=device)
        if vocab_size is None:
            raise ConfigError("generator.name: 'ngram' needs token data (a vocab_size)")
        self.vocab_size = int(vocab_size)
        self.base = self.vocab_size + 1  # tokens + the boundary id
        if float(self.base) ** params.order >= 2.0**62:
            raise ConfigError(f"generator.order: {params.order}-grams over {self.vocab_size} tokens do not fit "
                              f"64-bit n-gram keys; lower the order")
        self.max_tokens = int(data_shape[0])
        self.tables: list[dict[str, np.ndarray]] | None = None  # per order j = 1..n: keys, offsets, nxt, count

    @classmethod
    def check_dataset(cls, params, dataset) -> None:
        v = dataset.vocab_size
        if float(v + 1) ** params.order >= 2.0**62:
            raise ConfigError(f"generator.order: {params.order}-grams over {v} tokens do not fit 64-bit keys")

    # ------------------------------------------------------------------ fitting
    def _windows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contexts (m, order-1), targets (m,)) of every counted position of the rows."""
        n, b = self.params.order, self.vocab_size
        x = np.asarray(x, dtype=np.int64)
        rows, width = x.shape
        full = np.full((rows, n - 1 + width + 1), -2, dtype=np.int64)
        full[:, :n - 1] = b
        full[:, n - 1:n - 1 + width] = x
        ln = lengths(x)
        ended = ln < width
        full[np.nonzero(ended)[0], n - 1 + ln[ended]] = b
        win = np.lib.stride_tricks.sliding_window_view(full, n, axis=1)  # (rows, width + 1, n)
        win = win.reshape(-1, n)
        win = win[win[:, -1] >= 0]
        return win[:, :-1], win[:, -1]

    def _key(self, contexts: np.ndarray) -> np.ndarray:
        """Integer key of each context row (the last column is the most recent token)."""
        key = np.zeros(len(contexts), dtype=np.int64)
        for j in range(contexts.shape[1]):
            key = key * self.base + contexts[:, j]
        return key

    def fit(self, data: Samples, *, seed: int) -> None:
        del seed  # counting is deterministic
        ctx, target = self._windows(data.x)
        tables = []
        for j in range(1, self.params.order + 1):
            key = self._key(ctx[:, ctx.shape[1] - (j - 1):]) if j > 1 else np.zeros(len(target), dtype=np.int64)
            code = key * self.base + target
            if self.tables is not None:  # warm start: continue counting
                old = self.tables[j - 1]
                old_code = np.repeat(old["keys"], np.diff(old["offsets"])) * self.base + old["nxt"]
                code = np.concatenate([code, np.repeat(old_code, old["count"].astype(np.int64))])
            uniq, count = np.unique(code, return_counts=True)
            keys_all, nxt = uniq // self.base, uniq % self.base
            keys, starts = np.unique(keys_all, return_index=True)
            offsets = np.append(starts, len(uniq)).astype(np.int64)
            tables.append({"keys": keys, "offsets": offsets, "nxt": nxt.astype(np.int64),
                           "count": count.astype(np.float64)})
        self.tables = tables
        self._samplers = {}

    # ------------------------------------------------------------------ distributions
    def _require(self):
        if self.tables is None:
            raise RuntimeError("ngram: fit or load a state first")
        return self.tables

    def _lookup(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each row of ``history`` (rows, order-1): (order j used, row index into table j)."""
        tables = self._require()
        rows = len(history)
        order = np.zeros(rows, dtype=np.int64)
        where = np.zeros(rows, dtype=np.int64)
        todo = np.ones(rows, dtype=bool)
        for j in range(self.params.order, 0, -1):
            t = tables[j - 1]
            if j == 1:
                key = np.zeros(rows, dtype=np.int64)
            else:
                key = self._key(history[:, history.shape[1] - (j - 1):])
            pos = np.searchsorted(t["keys"], key)
            found = (pos < len(t["keys"])) & (t["keys"][np.minimum(pos, len(t["keys"]) - 1)] == key) & todo
            order[found], where[found] = j, pos[found]
            todo &= ~found
            if not todo.any():
                break
        if todo.any():  # only possible with an empty training set
            raise RuntimeError("ngram: no counts to sample from")
        return order, where

    def _probabilities(self, j: int, row: int, temperature: float = 1.0) -> np.ndarray:
        """Dense next-token distribution (vocab + end marker) of context ``row`` of table j."""
        t = self.tables[j - 1]
        lo, hi = t["offsets"][row], t["offsets"][row + 1]
        w = np.full(self.base, self.params.add_k, dtype=np.float64)
        w[t["nxt"][lo:hi]] += t["count"][lo:hi]
        return _tempered(w, temperature)

    def log_likelihood(self, x: np.ndarray) -> tuple[float, int]:
        """(Σ log p of every token and end marker of the rows under the model at λ = 1, how many).

        ``exp(-total / count)`` is the per-token perplexity. A token of probability 0 (possible
        only with ``add_k: 0``) makes the total ``-inf``.
        """
        ctx, target = self._windows(x)
        order, where = self._lookup(ctx)
        total = 0.0
        for j in np.unique(order):
            t = self.tables[j - 1]
            sel = order == j
            rows, tgt = where[sel], target[sel]
            lo, hi = t["offsets"][rows], t["offsets"][rows + 1]
            totals = np.add.reduceat(t["count"], t["offsets"][:-1])[rows] if len(t["count"]) else np.zeros(len(rows))
            code = t["keys"][rows] * self.base + tgt
            all_code = np.repeat(t["keys"], np.diff(t["offsets"])) * self.base + t["nxt"]
            pos = np.searchsorted(all_code, code)
            hit = (pos < len(all_code)) & (pos >= lo) & (pos < hi)
            hit &= all_code[np.minimum(pos, len(all_code) - 1)] == code
            c = np.where(hit, t["count"][np.minimum(pos, len(all_code) - 1)], 0.0)
            k = self.params.add_k
            with np.errstate(divide="ignore"):
                total += float(np.log((c + k) / (totals + k * self.base)).sum())
        return total, int(len(target))

    # ------------------------------------------------------------------ sampling
    def _sampler(self, j: int, temperature: float) -> dict[str, np.ndarray]:
        """Table j's tempered weights, flattened: seen entries' cumulative weights per context and
        the weight of each unseen outcome (add-k), each context scaled by its largest weight."""
        key = (j, float(temperature))
        cache = self.__dict__.setdefault("_samplers", {})
        if key in cache:
            return cache[key]
        t, k = self.tables[j - 1], self.params.add_k
        seg = np.repeat(np.arange(len(t["keys"])), np.diff(t["offsets"]))
        c = t["count"] + k
        if temperature <= 0:  # greedy: the first largest seen entry of each context
            best = np.maximum.reduceat(c, t["offsets"][:-1])[seg]
            first = np.zeros(len(c), dtype=bool)
            is_best = c == best
            first_pos = np.minimum.reduceat(np.where(is_best, np.arange(len(c)), len(c)), t["offsets"][:-1])
            first[first_pos] = True
            w, unseen = first.astype(np.float64), np.zeros(len(t["keys"]))
        else:
            logc = np.log(c) / temperature
            top = np.maximum.reduceat(logc, t["offsets"][:-1])
            w = np.exp(logc - top[seg])
            unseen = np.exp(np.log(k) / temperature - top) if k > 0 else np.zeros(len(t["keys"]))
        cum = np.cumsum(w)
        start = np.concatenate([[0.0], cum])[t["offsets"][:-1]]
        seen_mass = np.concatenate([[0.0], cum])[t["offsets"][1:]] - start
        n_unseen = self.base - np.diff(t["offsets"])
        out = {"cum": cum, "start": start, "seen_mass": seen_mass, "unseen": unseen, "n_unseen": n_unseen,
               "code": np.repeat(t["keys"], np.diff(t["offsets"])) * self.base + t["nxt"]}
        cache[key] = out
        return out

    def _draw(self, order: np.ndarray, where: np.ndarray, u: np.ndarray, temperature: float) -> np.ndarray:
        """One next token per row from context ``where`` of table ``order``, by inverse CDF at ``u``."""
        tokens = np.empty(len(u), dtype=np.int64)
        for j in np.unique(order):
            sel = np.nonzero(order == j)[0]
            s, t = self._sampler(int(j), temperature), self.tables[j - 1]
            row = where[sel]
            total = s["seen_mass"][row] + s["unseen"][row] * s["n_unseen"][row]
            target = u[sel] * total
            in_seen = target < s["seen_mass"][row]
            pos = np.searchsorted(s["cum"], s["start"][row] + target, side="right")
            lo, hi = t["offsets"][row], t["offsets"][row + 1]
            pos = np.clip(pos, lo, hi - 1)
            tok = t["nxt"][pos]
            if (~in_seen).any():  # the r-th outcome never seen in this context (add-k mass)
                rr = ~in_seen
                r = np.floor((target[rr] - s["seen_mass"][row[rr]]) / s["unseen"][row[rr]]).astype(np.int64)
                r = np.minimum(r, s["n_unseen"][row[rr]] - 1)
                base_code = t["keys"][row[rr]] * self.base
                a = r.copy()
                while True:  # a = r + #(seen outcomes <= a), iterated to its fixed point
                    below = np.searchsorted(s["code"], base_code + a, side="right") - lo[rr]
                    nxt = r + below
                    if np.array_equal(nxt, a):
                        break
                    a = nxt
                tok[rr] = a
            tokens[sel] = tok
        return tokens

    def sample(self, n: int, *, bias: float, seed: int) -> Samples:
        self._require()
        rng = np.random.default_rng(seed)
        width, b, ctx_len = self.max_tokens, self.vocab_size, self.params.order - 1
        history = np.full((n, ctx_len), b, dtype=np.int64)
        out = np.full((n, width), PAD, dtype=np.int64)
        alive = np.arange(n)
        for pos in range(width):
            u = rng.random(n)[alive]  # one uniform per row and position, whether alive or not
            order, where = self._lookup(history[alive])
            tokens = self._draw(order, where, u, bias)
            keep = tokens != b
            alive = alive[keep]
            out[alive, pos] = tokens[keep]
            if ctx_len:
                history[alive] = np.concatenate([history[alive, 1:], tokens[keep, None]], axis=1)
            if not len(alive):
                break
        return Samples(out)

    # ------------------------------------------------------------------ diagnostics
    def unigram(self) -> np.ndarray:
        """The fitted unigram distribution over the vocabulary (end marker excluded, renormalised)."""
        p = self._probabilities(1, 0)[:self.vocab_size]
        return p / p.sum()

    def model_metrics(self, dataset) -> dict[str, float]:
        p = self.unigram()
        nz = p > 0
        out = {"model_entropy": float(-(p[nz] * np.log(p[nz])).sum()),
               "model_support": float(nz.sum()),
               "model_gini_simpson": float(1.0 - (p**2).sum())}
        if self.params.order > 1:
            count = self.tables[-1]["count"]
            q = count / count.sum()
            out["model_ngram_support"] = float(len(count))
            out["model_ngram_entropy"] = float(-(q * np.log(q)).sum())
        truth = getattr(dataset, "true_unigram", lambda: None)()
        if truth is not None and self.params.order == 1:
            out["model_tv_truth"] = float(0.5 * np.abs(p - truth).sum())
            out["model_kl_truth"] = float((p[nz] * np.log(p[nz] / truth[nz])).sum())
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self):
        state = {"vocab_size": np.asarray([self.vocab_size], dtype=np.int64)}
        for j, t in enumerate(self._require(), 1):
            for name, value in t.items():
                state[f"order{j}.{name}"] = value
        return state

    def load_state_dict(self, state):
        state = {k: np.asarray(v) for k, v in state.items()}
        if int(state["vocab_size"][0]) != self.vocab_size:
            raise ConfigError(f"ngram: checkpoint has {int(state['vocab_size'][0])} tokens, the data "
                              f"{self.vocab_size} (tokenizer mismatch)")
        self.tables = [{name: state[f"order{j}.{name}"] for name in ("keys", "offsets", "nxt", "count")}
                       for j in range(1, self.params.order + 1)]
        self._samplers = {}


def _tempered(weights: np.ndarray, temperature: float) -> np.ndarray:
    """weights^(1/λ), computed in log space; λ = 0 puts all mass on the first maximum."""
    if temperature <= 0:
        out = np.zeros_like(weights)
        out[int(np.argmax(weights))] = 1.0
        return out
    if temperature == 1:
        return weights / weights.sum()
    with np.errstate(divide="ignore"):
        logw = np.log(weights) / temperature
    logw -= logw.max()
    w = np.exp(logw)
    return w / w.sum()
