"""Naive pandas reference implementations of every feature, written independently of the SQL.

One loop over cutoffs; inside, plain filters and groupbys on tz-aware timestamps. The tests
compare :func:`churn.features.build.build_features` with these on random data; the benchmark
times them as the "straightforward pandas" baseline. Each function returns a frame indexed by
(customer_id, cutoff) for the distinct keys given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.contract import PRESALE_TOUCHPOINT_TYPES
from support.campaign_stems import naive_campaign_stem

DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)
CID = "customer_id"


def _per_cutoff(keys: pd.DataFrame, compute) -> pd.DataFrame:
    parts = []
    for cutoff, group in keys.groupby("cutoff", sort=True):
        ids = pd.Index(group[CID].unique(), name=CID)
        frame = compute(pd.Timestamp(cutoff), ids)
        parts.append(frame.reindex(ids).assign(cutoff=cutoff).set_index("cutoff", append=True))
    return pd.concat(parts)


def _count(frame: pd.DataFrame, ids: pd.Index) -> pd.Series:
    return frame.groupby(CID).size().reindex(ids, fill_value=0).astype("float64")


def _sum(values: pd.Series, by: pd.Series, ids: pd.Index) -> pd.Series:
    return values.groupby(by).sum().reindex(ids, fill_value=0.0).astype("float64")


def _add_months(ts: pd.Series, months: pd.Series) -> pd.Series:
    """Calendar month arithmetic clamping the day to the month's end."""
    total = ts.dt.year * 12 + (ts.dt.month - 1) + months
    year, month = total // 12, total % 12 + 1
    first = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}))
    last_day = first.dt.days_in_month
    day = np.minimum(ts.dt.day, last_day)
    base = first + pd.to_timedelta(day - 1, unit="D")
    return base.dt.tz_localize("UTC") + (ts - ts.dt.normalize())


def usage_event_types(events: pd.DataFrame, before: pd.Timestamp, top: int) -> list[str]:
    """The ``top`` most frequent types (rows; ties by name) before ``before``, by counting."""
    counts: dict[str, int] = {}
    for event_type, occurred in zip(events["event_type"], events["occurred_at"], strict=True):
        if pd.notna(event_type) and occurred < before:
            counts[event_type] = counts.get(event_type, 0) + 1
    return sorted(counts, key=lambda t: (-counts[t], t))[:top]


def usage(tables: dict, keys: pd.DataFrame, cfg: FeaturesConfig) -> pd.DataFrame:
    events = tables["usage_events"]
    windows = cfg.windows_days
    types = cfg.usage_event_types
    if types == "auto":
        types = usage_event_types(events, keys["cutoff"].min(), cfg.usage_event_types_top)

    def compute(cutoff: pd.Timestamp, ids: pd.Index) -> pd.DataFrame:
        e = events[events["occurred_at"] < cutoff]
        e = e.assign(q=e["quantity"].fillna(1.0), day=e["occurred_at"].dt.floor("D"))
        out = pd.DataFrame(index=ids)
        for w in windows:
            m = e[e["occurred_at"] >= cutoff - w * DAY]
            out[f"usage_active_days_last_{w}d"] = _count(m.drop_duplicates([CID, "day"]), ids)
            out[f"usage_events_last_{w}d"] = _sum(m["q"], m[CID], ids)
            for t in types:
                mt = m[m["event_type"] == t]
                out[f"usage_{t}_events_last_{w}d"] = _sum(mt["q"], mt[CID], ids)
        for w in windows:
            active = out[f"usage_active_days_last_{w}d"]
            for prefix in ["usage", *(f"usage_{t}" for t in types)]:
                rate = out[f"{prefix}_events_last_{w}d"] / active
                out[f"{prefix}_events_per_active_day_last_{w}d"] = rate.where(active > 0)
        if len(windows) >= 2:
            r, big = windows[-2], windows[-1]
            recent = out[f"usage_events_last_{r}d"]
            prior = out[f"usage_events_last_{big}d"] - recent
            out[f"usage_trend_{r}d_vs_prior_{big - r}d"] = (
                (recent / r) / (prior / (big - r))
            ).where(prior > 0)
        last = e.groupby(CID)["occurred_at"].max().reindex(ids)
        out["days_since_last_event"] = (cutoff - last) / DAY
        if "login" in types:
            logins = e[e["event_type"] == "login"]
            out["days_since_last_login"] = (
                cutoff - logins.groupby(CID)["occurred_at"].max().reindex(ids)
            ) / DAY
        return out

    return _per_cutoff(keys, compute)


def _mrr_state(tables: dict, at: pd.Timestamp) -> pd.DataFrame:
    subs = tables["subscriptions"]
    active = subs[
        (subs["started_at"] < at) & (subs["ended_at"].isna() | (subs["ended_at"] >= at))
    ].copy()
    changes = tables.get("subscription_changes")
    if changes is not None:
        known = changes[changes["effective_at"] < at].sort_values(
            ["subscription_id", "effective_at", "mrr_after"]
        )
        latest = known.groupby("subscription_id")["mrr_after"].last()
        active["mrr"] = (
            active["subscription_id"].map(latest).astype("float64").fillna(active["mrr"])
        )
    return active


def _summary(active: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    top = (
        active.sort_values(["mrr", "started_at", "subscription_id"], ascending=False)
        .groupby(CID)
        .head(1)
        .set_index(CID)
    )
    return pd.DataFrame(
        {
            "mrr": active.groupby(CID)["mrr"].sum(),
            "n": active.groupby(CID).size(),
            "plan": top["plan"],
            "billing_period": top["billing_period"],
            "started_at": top["started_at"],
        }
    ).reindex(ids)


def billing(tables: dict, keys: pd.DataFrame, cfg: FeaturesConfig) -> pd.DataFrame:
    subs = tables["subscriptions"]
    customers = tables.get("customers")
    changes = tables.get("subscription_changes")
    big = max(cfg.windows_days)

    def compute(cutoff: pd.Timestamp, ids: pd.Index) -> pd.DataFrame:
        now_active = _mrr_state(tables, cutoff)
        now = _summary(now_active, ids)
        past = _summary(_mrr_state(tables, cutoff - big * DAY), ids)
        out = pd.DataFrame(index=ids)
        known = subs[subs["started_at"] < cutoff]
        first = [known.groupby(CID)["started_at"].min().reindex(ids)]
        if customers is not None:
            conv = customers[customers["converted_at"] < cutoff].groupby(CID)["converted_at"].min()
            first.append(conv.reindex(ids))
        first_seen = pd.concat(first, axis=1).min(axis=1)
        out["tenure_days"] = np.floor((cutoff - first_seen) / DAY)
        out["mrr_at_cutoff"] = now["mrr"].fillna(0.0)
        out[f"mrr_change_{big}d"] = now["mrr"].fillna(0.0) - past["mrr"].fillna(0.0)
        out[f"mrr_change_pct_{big}d"] = (
            (now["mrr"].fillna(0.0) - past["mrr"]) / past["mrr"]
        ).where(past["mrr"] > 0)
        out["plan"] = now["plan"]
        out["billing_period"] = now["billing_period"]
        has = now["started_at"].notna()
        started = now.loc[has, "started_at"]
        renews_every = {"quarterly": 3, "semiannual": 6, "annual": 12}  # months; else monthly
        step = now.loc[has, "billing_period"].map(renews_every).fillna(1).astype("int64")
        elapsed = (cutoff.year - started.dt.year) * 12 + (cutoff.month - started.dt.month)
        months = step * (elapsed // step)
        candidate = _add_months(started, months)
        later = _add_months(started, months + step)
        renewal = candidate.where(candidate >= cutoff, later)
        out["days_to_renewal"] = ((renewal - cutoff) / DAY).reindex(ids)
        out["active_subscriptions"] = now["n"].fillna(0).astype("float64")
        ordered = known.sort_values([CID, "started_at", "subscription_id"])
        end_us = ordered["ended_at"].where(ordered["ended_at"] < cutoff)
        end_int = np.where(
            end_us.isna(),
            np.iinfo("int64").max,
            end_us.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype("int64"),
        )
        running = pd.Series(end_int, index=ordered.index).groupby(ordered[CID]).cummax()
        previous = running.groupby(ordered[CID]).shift()
        start_int = (
            ordered["started_at"]
            .dt.tz_localize(None)
            .to_numpy(dtype="datetime64[us]")
            .astype("int64")
        )
        lapse = previous.notna() & (start_int > previous.fillna(0).to_numpy())
        out["previous_churns"] = (
            lapse.groupby(ordered[CID]).sum().reindex(ids, fill_value=0).astype("float64")
        )
        if changes is not None:
            for w in cfg.windows_days:
                c = changes[
                    (changes["effective_at"] < cutoff)
                    & (changes["effective_at"] >= cutoff - w * DAY)
                ]
                for kind, stem in (
                    ("upgrade", "subscription_upgrades"),
                    ("downgrade", "subscription_downgrades"),
                    ("discount_start", "discounts_started"),
                    ("price_increase", "price_increases"),
                ):
                    out[f"{stem}_last_{w}d"] = _count(c[c["change_type"] == kind], ids)
            d = changes[
                (changes["effective_at"] < cutoff)
                & changes["change_type"].isin(["discount_start", "discount_end"])
            ]
            d = d.assign(is_end=d["change_type"] == "discount_end").sort_values(
                ["subscription_id", "effective_at", "is_end"]
            )
            latest = d.groupby("subscription_id")["change_type"].last()
            running_discount = now_active["subscription_id"].map(latest) == "discount_start"
            out["discount_active_at_cutoff"] = (
                running_discount.groupby(now_active[CID])
                .max()
                .reindex(ids, fill_value=False)
                .astype("float64")
            )
        return out

    return _per_cutoff(keys, compute)


def support(tables: dict, keys: pd.DataFrame, cfg: FeaturesConfig) -> pd.DataFrame:
    tickets = tables["support_tickets"]
    big = max(cfg.windows_days)

    def compute(cutoff: pd.Timestamp, ids: pd.Index) -> pd.DataFrame:
        t = tickets[tickets["opened_at"] < cutoff]
        start = cutoff - big * DAY
        out = pd.DataFrame(index=ids)
        for w in cfg.windows_days:
            out[f"support_tickets_last_{w}d"] = _count(t[t["opened_at"] >= cutoff - w * DAY], ids)
        recent = t[t["opened_at"] >= start]
        out[f"support_high_priority_tickets_last_{big}d"] = _count(
            recent[recent["priority"].isin(["high", "urgent"])], ids
        )
        for c in cfg.ticket_categories:
            out[f"support_{c}_tickets_last_{big}d"] = _count(recent[recent["category"] == c], ids)
        still_open = t["resolved_at"].isna() | (t["resolved_at"] >= cutoff)
        out["open_tickets_at_cutoff"] = _count(t[still_open], ids)
        waiting = still_open & (t["first_response_at"].isna() | (t["first_response_at"] >= cutoff))
        out["unanswered_tickets_at_cutoff"] = _count(t[waiting], ids)
        responded = t[(t["first_response_at"] >= start) & (t["first_response_at"] < cutoff)]
        out[f"median_first_response_hours_last_{big}d"] = (
            ((responded["first_response_at"] - responded["opened_at"]) / HOUR)
            .groupby(responded[CID])
            .median()
            .reindex(ids)
        )
        resolved = t[(t["resolved_at"] >= start) & (t["resolved_at"] < cutoff)]
        out[f"median_resolution_hours_last_{big}d"] = (
            ((resolved["resolved_at"] - resolved["opened_at"]) / HOUR)
            .groupby(resolved[CID])
            .median()
            .reindex(ids)
        )
        out[f"reopened_ticket_share_last_{big}d"] = (
            resolved["reopened"]
            .fillna(False)
            .astype("float64")
            .groupby(resolved[CID])
            .mean()
            .reindex(ids)
        )
        rated = t[t["csat_score"].notna() & (t["csat_received_at"] < cutoff)]
        window = rated[rated["csat_received_at"] >= start]
        out[f"mean_csat_last_{big}d"] = (
            window["csat_score"].astype("float64").groupby(window[CID]).mean().reindex(ids)
        )
        last = (
            rated.sort_values(["csat_received_at", "ticket_id"]).groupby(CID)["csat_score"].last()
        )
        out["last_csat_score"] = last.astype("float64").reindex(ids)
        out["days_since_last_ticket"] = (
            cutoff - t.groupby(CID)["opened_at"].max().reindex(ids)
        ) / DAY
        return out

    return _per_cutoff(keys, compute)


def acquisition(tables: dict, keys: pd.DataFrame, cfg: FeaturesConfig) -> pd.DataFrame:
    customers = tables["customers"].set_index(CID)
    touches = tables.get("presale_touchpoints")
    events = tables.get("usage_events")
    trial = None
    if events is not None:
        e = events.merge(customers["converted_at"], left_on=CID, right_index=True)
        e = e[e["occurred_at"] < e["converted_at"]]
        trial = pd.DataFrame(
            {
                "trial_usage_events": e["quantity"].fillna(1.0).groupby(e[CID]).sum(),
                "trial_active_days": e.assign(day=e["occurred_at"].dt.floor("D"))
                .drop_duplicates([CID, "day"])
                .groupby(CID)
                .size(),
            }
        )

    def compute(cutoff: pd.Timestamp, ids: pd.Index) -> pd.DataFrame:
        c = customers[customers["converted_at"] < cutoff].reindex(ids)
        converted = ids.isin(customers.index[customers["converted_at"] < cutoff])
        out = pd.DataFrame(index=ids)
        for col in ("acquisition_channel", "segment", "country"):
            out[col] = c[col]
        out["campaign_stem"] = [
            None if pd.isna(code) else naive_campaign_stem(code, cfg.campaign_period_pattern)
            for code in c["campaign"]
        ]
        out["days_lead_to_conversion"] = (c["converted_at"] - c["lead_created_at"]) / DAY
        out["trial_days"] = c["trial_days"].astype("float64")
        if touches is not None:
            t = touches[touches["occurred_at"] < cutoff]
            for kind in PRESALE_TOUCHPOINT_TYPES:
                out[f"presale_{kind}_touches"] = _count(t[t["touchpoint_type"] == kind], ids)
            out["docs_and_help_views_before_conversion"] = _count(
                t[t["touchpoint_type"].isin(["docs_view", "help_center_view"])], ids
            )
            out["total_presale_touches"] = _count(t, ids)
        if trial is not None:
            for col in trial.columns:
                out[col] = trial[col].reindex(ids, fill_value=0).astype("float64")
        numeric = [
            col
            for col in out.columns
            if col not in ("acquisition_channel", "campaign_stem", "segment", "country")
        ]
        out.loc[~converted, numeric] = np.nan
        return out

    return _per_cutoff(keys, compute)


def engagement(tables: dict, keys: pd.DataFrame, cfg: FeaturesConfig) -> pd.DataFrame:
    touches = tables.get("postsale_touchpoints")
    nps = tables.get("nps_responses")
    customers = tables.get("customers")
    big = max(cfg.windows_days)

    def compute(cutoff: pd.Timestamp, ids: pd.Index) -> pd.DataFrame:
        out = pd.DataFrame(index=ids)
        if touches is not None:
            t = touches[touches["occurred_at"] < cutoff]
            for w in cfg.windows_days:
                m = t[t["occurred_at"] >= cutoff - w * DAY]
                out[f"help_center_views_last_{w}d"] = _count(
                    m[m["touchpoint_type"] == "help_center_view"], ids
                )
            for w in cfg.windows_days:
                m = t[t["occurred_at"] >= cutoff - w * DAY]
                out[f"community_posts_last_{w}d"] = _count(
                    m[m["touchpoint_type"] == "community_post"], ids
                )
            m = t[(t["occurred_at"] >= cutoff - big * DAY) & (t["touchpoint_type"] == "webinar")]
            out[f"webinars_attended_last_{big}d"] = _count(m, ids)
            if customers is not None:
                conv = customers[customers["converted_at"] < cutoff].set_index(CID)["converted_at"]
                j = t.merge(conv.rename("conv"), left_on=CID, right_index=True)
                j = j[(j["occurred_at"] >= j["conv"]) & (j["occurred_at"] < j["conv"] + 30 * DAY)]
                for name, kind in (
                    ("onboarding_steps_completed_first_30d", "onboarding_step_completed"),
                    ("onboarding_emails_opened_first_30d", "onboarding_email_open"),
                ):
                    out[name] = _count(j[j["touchpoint_type"] == kind], ids).where(
                        ids.isin(conv.index)
                    )
        if nps is not None:
            n = nps[nps["responded_at"] < cutoff].sort_values(["responded_at", "score"])
            grouped = n.groupby(CID)
            last = (
                grouped["score"]
                .nth(-1)
                .pipe(lambda s: pd.Series(s.to_numpy(), index=n.loc[s.index, CID]))
            )
            prev = (
                grouped["score"]
                .nth(-2)
                .pipe(lambda s: pd.Series(s.to_numpy(), index=n.loc[s.index, CID]))
            )
            last = last.astype("float64").reindex(ids)
            out["last_nps_score"] = last
            out["nps_trend"] = last - prev.astype("float64").reindex(ids)
            out["days_since_last_nps"] = (cutoff - grouped["responded_at"].max().reindex(ids)) / DAY
            out["last_nps_promoter"] = (last >= 9).astype("float64").where(last.notna())
            out["last_nps_detractor"] = (last <= 6).astype("float64").where(last.notna())
        return out

    return _per_cutoff(keys, compute)


FAMILIES = {
    "acquisition": acquisition,
    "billing": billing,
    "usage": usage,
    "support": support,
    "engagement": engagement,
}
