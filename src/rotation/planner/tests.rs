//! The planner as a table: observed state in, steps and end out.

use super::*;
use crate::config::DurationSetting;

const DAY: u64 = 86_400;
/// "Now" of every case.
const NOW: u64 = 1_700_000_000;

fn at(secs_ago: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - secs_ago)
}

fn key(id: &str, active: bool, secs_ago: u64) -> KeyMeta {
    KeyMeta {
        id: id.to_string(),
        active,
        created: at(secs_ago),
    }
}

fn holds(id: &str) -> StoreView {
    StoreView {
        copy: false,
        held: Held::Key(id.to_string()),
        pending: None,
    }
}

fn empty() -> StoreView {
    StoreView {
        copy: false,
        held: Held::Empty,
        pending: None,
    }
}

fn broken(id: &str) -> StoreView {
    StoreView {
        copy: false,
        held: Held::Broken(Some(id.to_string())),
        pending: None,
    }
}

fn staged(store: StoreView, pending: &str) -> StoreView {
    StoreView {
        pending: Some(pending.to_string()),
        ..store
    }
}

fn copy_holding(id: &str) -> StoreView {
    StoreView {
        copy: true,
        ..holds(id)
    }
}

fn seen(keys: Vec<KeyMeta>, stores: Vec<StoreView>) -> Observed {
    Observed {
        keys,
        stores,
        usage: BTreeMap::new(),
        tags: BTreeMap::new(),
        owners: BTreeMap::new(),
        now: at(0),
    }
}

fn policy(rotate_after_days: u64, mode: Mode) -> RotationPolicy {
    let days = |d: u64| DurationSetting::parse(&format!("{d}d")).unwrap();
    RotationPolicy {
        max_age: Some(days(rotate_after_days * 2 + 1)),
        rotate_after: Some(days(rotate_after_days)),
        mode,
        quiet_period: days(1),
        grace: days(2),
        max_wait: days(30),
        ..RotationPolicy::default()
    }
}

/// The steps of a rotation over `stores` stores, after `before`.
fn rotation(before: Vec<Step>, stores: usize) -> Vec<Step> {
    let mut steps = before;
    steps.push(Step::Create);
    steps.extend((0..stores).map(|store| Step::Write { store }));
    steps.push(Step::VerifyNew);
    steps.push(Step::Promote);
    steps
}

fn verify(key: &str) -> Step {
    Step::VerifyStored { key: key.into() }
}

fn delete(key: &str, reason: &'static str) -> Step {
    Step::Delete {
        key: key.to_string(),
        reason,
    }
}

fn fill(store: usize, key: &str) -> Step {
    Step::Fill {
        store,
        key: key.to_string(),
        reason: String::new(),
    }
}

/// Fill reasons are prose; the table compares the rest.
fn without_reasons(steps: &[Step]) -> Vec<Step> {
    steps
        .iter()
        .map(|s| match s {
            Step::Fill { store, key, .. } => fill(*store, key),
            other => other.clone(),
        })
        .collect()
}

fn run(seen: &Observed, policy: &RotationPolicy, lock: bool) -> Result<Plan, PlanError> {
    let rules = Rules {
        policy,
        force: false,
        lock_ttl: lock.then(|| Duration::from_secs(900)),
    };
    plan(seen, rules)
}

struct Case {
    name: &'static str,
    seen: Observed,
    mode: Mode,
    steps: Vec<Step>,
    end: End,
}

#[test]
fn two_key_plans() {
    let fresh_policy = 7;
    let orphan = |k: &str| Step::DeleteOrphan { key: k.into() };
    let cases = vec![
        Case {
            name: "no key: create and store one",
            seen: seen(vec![], vec![empty()]),
            mode: Mode::TwoKey,
            steps: rotation(vec![], 1),
            end: End::Rotated,
        },
        Case {
            name: "one young stored key: fresh",
            seen: seen(vec![key("A", true, DAY)], vec![holds("A")]),
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Fresh,
        },
        Case {
            name: "one old stored key: it becomes LAST",
            seen: seen(vec![key("A", true, 10 * DAY)], vec![holds("A")]),
            mode: Mode::TwoKey,
            steps: rotation(vec![], 1),
            end: End::Rotated,
        },
        Case {
            name: "two keys: LAST goes",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("CUR", true, 10 * DAY)],
                vec![holds("CUR"), empty_copy()],
            ),
            mode: Mode::TwoKey,
            steps: rotation(vec![delete("OLD", "LAST key")], 2),
            end: End::Rotated,
        },
        Case {
            name: "an Inactive key goes first, even when newer",
            seen: seen(
                vec![key("CUR", true, 20 * DAY), key("OFF", false, 10 * DAY)],
                vec![holds("CUR")],
            ),
            mode: Mode::TwoKey,
            steps: rotation(vec![delete("OFF", "Inactive key")], 1),
            end: End::Rotated,
        },
        Case {
            name: "an unstored, unused key newer than the stored one is an orphan",
            seen: seen(
                vec![key("OLD", true, 2 * DAY), key("ORPH", true, DAY)],
                vec![holds("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![orphan("ORPH")],
            end: End::Fresh,
        },
        Case {
            name: "a lagging store is filled from the newest stored key, and the key it held survives the run",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("NEW", true, 10 * DAY)],
                vec![holds("NEW"), holds("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![verify("NEW"), fill(1, "NEW")],
            end: End::Synced(String::new()),
        },
        Case {
            name: "a pending promotion is finished, and the key consumers read until then survives",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("PEND", true, 10 * DAY)],
                vec![staged(holds("OLD"), "PEND")],
            ),
            mode: Mode::TwoKey,
            steps: vec![verify("PEND"), fill(0, "PEND")],
            end: End::Synced(String::new()),
        },
        Case {
            name: "stores that hold nothing make a young key due (the seed flow)",
            seen: seen(vec![key("TF", true, 60)], vec![empty(), empty()]),
            mode: Mode::TwoKey,
            steps: rotation(vec![], 2),
            end: End::Rotated,
        },
        Case {
            name: "a torn pair is repaired from a whole store",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("NEW", true, DAY)],
                vec![holds("NEW"), broken("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![verify("NEW"), fill(1, "NEW")],
            end: End::Fresh,
        },
        Case {
            name: "a torn pair with no whole key anywhere: rotate now",
            seen: seen(vec![key("A", true, DAY)], vec![broken("A")]),
            mode: Mode::TwoKey,
            steps: rotation(vec![], 1),
            end: End::Rotated,
        },
        Case {
            name: "a copy's key counts when there is no real store",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("CUR", true, 10 * DAY)],
                vec![copy_holding("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: rotation(vec![orphan("CUR")], 1),
            end: End::Rotated,
        },
    ];
    check(cases, fresh_policy, false);
}

fn empty_copy() -> StoreView {
    StoreView {
        copy: true,
        ..empty()
    }
}

fn check(cases: Vec<Case>, rotate_after_days: u64, lock: bool) {
    for case in cases {
        let policy = policy(rotate_after_days, case.mode);
        let plan = run(&case.seen, &policy, lock)
            .unwrap_or_else(|e| panic!("{}: refused: {e}", case.name));
        assert_eq!(
            without_reasons(&plan.steps),
            case.steps,
            "{}: steps",
            case.name
        );
        let same_end = match (&plan.end, &case.end) {
            (End::Synced(_), End::Synced(_)) => true,
            (End::Retiring(_), End::Retiring(_)) => true,
            (End::Busy(_), End::Busy(_)) => true,
            (End::Stuck(_), End::Stuck(_)) => true,
            (a, b) => a == b,
        };
        assert!(
            same_end,
            "{}: ended {:?}, not {:?}",
            case.name, plan.end, case.end
        );
        // The invariant every plan keeps: no key a store handed out at the start is
        // deleted or deactivated.
        let handed_out: Vec<&str> = case
            .seen
            .stores
            .iter()
            .flat_map(|s| [s.held.id(), s.pending.as_deref()])
            .flatten()
            .collect();
        let real_stores = case.seen.stores.iter().any(|s| !s.copy);
        for step in &plan.steps {
            if let Step::Delete { key, .. }
            | Step::DeleteOrphan { key }
            | Step::Deactivate { key } = step
            {
                let counted = case
                    .seen
                    .stores
                    .iter()
                    .filter(|s| !real_stores || !s.copy)
                    .any(|s| s.held.id() == Some(key) || s.pending.as_deref() == Some(key));
                assert!(
                    !counted,
                    "{}: retires {key}, which a store handed out ({handed_out:?})",
                    case.name
                );
            }
        }
    }
}

#[test]
fn lock_plans() {
    let mut dead = seen(
        vec![key("OLD", true, 2 * DAY), key("MINE", true, 30)],
        vec![holds("OLD")],
    );
    dead.owners
        .insert("MINE".into(), Owner::Dead("run r (pid 1 on h)".into()));
    let mut alive_first = seen(vec![key("FIRST", true, 30)], vec![empty()]);
    alive_first
        .owners
        .insert("FIRST".into(), Owner::Alive("run r (pid 1 on h)".into()));
    let mut dead_beside_empty = seen(
        vec![key("SEED", true, 60), key("MINE", true, 30)],
        vec![empty()],
    );
    dead_beside_empty
        .owners
        .insert("MINE".into(), Owner::Dead("run r (pid 1 on h)".into()));
    let mut verified_by_us = seen(
        vec![key("OLD", true, 2 * DAY), key("UNDONE", true, 1000)],
        vec![holds("OLD")],
    );
    // Past the lock TTL, and used a minute after its creation: by credrot's STS check.
    verified_by_us.usage.insert(
        "UNDONE".into(),
        Some(KeyUse {
            date: at(940),
            service: "sts".into(),
            region: "us-east-1".into(),
        }),
    );
    let cases = vec![
        Case {
            // A rollback that did not know a store had handed the new key out deleted it;
            // the rerun must not wait out the lock TTL before repairing that store.
            name: "a store that names a key IAM no longer has is repaired now, not taken for a run in flight",
            seen: seen(
                vec![key("NEW", true, 40)],
                vec![holds("NEW"), holds("GONE"), holds("NEW")],
            ),
            mode: Mode::TwoKey,
            steps: vec![verify("NEW"), fill(1, "NEW")],
            end: End::Fresh,
        },
        Case {
            name: "a young key beside an empty store is still another run's work",
            seen: seen(
                vec![key("OLD", true, 2 * DAY), key("NEW", true, 40)],
                vec![holds("NEW"), empty(), holds("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Busy(String::new()),
        },
        Case {
            name: "a dead run's key beside empty stores is an orphan (nobody has its secret)",
            seen: dead_beside_empty,
            mode: Mode::TwoKey,
            steps: rotation(vec![Step::DeleteOrphan { key: "MINE".into() }], 1),
            end: End::Rotated,
        },
        Case {
            name: "an orphan used only by credrot's own verification is still an orphan",
            seen: verified_by_us,
            mode: Mode::TwoKey,
            steps: vec![Step::DeleteOrphan {
                key: "UNDONE".into(),
            }],
            end: End::Fresh,
        },
        Case {
            name: "a young key a store lacks is another run's work",
            seen: seen(
                vec![key("OLD", true, 2 * DAY), key("NEW", true, 30)],
                vec![holds("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Busy(String::new()),
        },
        Case {
            name: "half-written stores are another run's work too",
            seen: seen(
                vec![key("OLD", true, 2 * DAY), key("NEW", true, 30)],
                vec![holds("NEW"), holds("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Busy(String::new()),
        },
        Case {
            name: "a key whose creator died on this host is taken over at once",
            seen: dead,
            mode: Mode::TwoKey,
            steps: vec![Step::DeleteOrphan { key: "MINE".into() }],
            end: End::Fresh,
        },
        Case {
            name: "with empty stores only a creator known to be alive makes the user busy",
            seen: alive_first,
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Busy(String::new()),
        },
        Case {
            name: "a torn pair naming the only key is no lock: it is repaired by a rotation",
            seen: seen(vec![key("A", true, 30)], vec![broken("A")]),
            mode: Mode::TwoKey,
            steps: rotation(vec![], 1),
            end: End::Rotated,
        },
        Case {
            name: "a key the torn store does not name is another run's",
            seen: seen(
                vec![key("OLD", true, 2 * DAY), key("NEW", true, 30)],
                vec![broken("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Busy(String::new()),
        },
        Case {
            name: "a key of a live run on this host is in flight even in the stored key's second",
            seen: {
                let mut same_second = seen(
                    vec![key("STORED", true, 30), key("LIVE", true, 30)],
                    vec![holds("STORED")],
                );
                same_second
                    .owners
                    .insert("LIVE".into(), Owner::Alive("run r (pid 1 on h)".into()));
                same_second
            },
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Busy(String::new()),
        },
        Case {
            name:
                "a young unstored key older than a stored one is a leftover, not work in progress",
            seen: {
                // A killed run on this host wrote STORED to one store of two.
                let mut half = seen(
                    vec![key("SEED", true, 60), key("STORED", true, 30)],
                    vec![holds("STORED"), empty()],
                );
                half.owners
                    .insert("STORED".into(), Owner::Dead("run r (pid 1 on h)".into()));
                half
            },
            mode: Mode::TwoKey,
            steps: vec![
                Step::VerifyStored {
                    key: "STORED".into(),
                },
                fill(1, "STORED"),
            ],
            end: End::Fresh,
        },
        Case {
            name: "a young key every store holds is no lock",
            seen: seen(vec![key("NEW", true, 30)], vec![holds("NEW")]),
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Fresh,
        },
    ];
    check(cases, 7, true);
}

#[test]
fn staged_plans() {
    let used = |days_ago: u64| {
        Some(KeyUse {
            date: at(days_ago * DAY),
            service: "s3".into(),
            region: "us-east-1".into(),
        })
    };
    let mut quiet = seen(
        vec![key("OLD", true, 20 * DAY), key("NEW", true, 5 * DAY)],
        vec![holds("NEW")],
    );
    quiet.usage.insert("OLD".into(), used(3));
    quiet.usage.insert("NEW".into(), used(0));
    let mut grace_over = seen(
        vec![key("OLD", false, 40 * DAY), key("NEW", true, 10 * DAY)],
        vec![holds("NEW")],
    );
    grace_over
        .tags
        .insert(format!("{DEACTIVATED_TAG}OLD"), (NOW - 5 * DAY).to_string());
    let mut in_grace = grace_over.clone();
    in_grace
        .tags
        .insert(format!("{DEACTIVATED_TAG}OLD"), (NOW - DAY / 2).to_string());
    let mut untagged = grace_over.clone();
    untagged.tags.clear();
    let cases = vec![
        Case {
            name: "new key in use, old one quiet: deactivate only",
            seen: quiet,
            mode: Mode::Staged,
            steps: vec![Step::Deactivate { key: "OLD".into() }],
            end: End::Retiring(None),
        },
        Case {
            name: "grace over: delete, then rotate when due",
            seen: grace_over,
            mode: Mode::Staged,
            steps: {
                let mut s = rotation(vec![delete("OLD", GRACE_OVER)], 1);
                s.push(Step::MarkVerified);
                s
            },
            end: End::Rotated,
        },
        Case {
            name: "within grace: wait",
            seen: in_grace,
            mode: Mode::Staged,
            steps: vec![],
            end: End::Retiring(None),
        },
        Case {
            name: "deactivated by hand: the grace period starts now",
            seen: untagged,
            mode: Mode::Staged,
            steps: vec![Step::MarkDeactivated { key: "OLD".into() }],
            end: End::Retiring(None),
        },
    ];
    check(cases, 7, false);
}

#[test]
fn refusals() {
    let policy = policy(7, Mode::TwoKey);
    let three = seen(
        vec![key("A", true, 3), key("B", true, 2), key("C", true, 1)],
        vec![],
    );
    assert_eq!(run(&three, &policy, false), Err(PlanError::TooManyKeys(3)));

    let mut used = seen(
        vec![key("OLD", true, 2 * DAY), key("USED", true, DAY)],
        vec![holds("OLD")],
    );
    used.usage.insert(
        "USED".into(),
        Some(KeyUse {
            date: at(60),
            service: "s3".into(),
            region: "eu-west-1".into(),
        }),
    );
    assert!(matches!(
        run(&used, &policy, false),
        Err(PlanError::UnmanagedKeyInUse { key_id, .. }) if key_id == "USED"
    ));
}

#[test]
fn the_planner_asks_only_what_it_needs() {
    let two_key = policy(7, Mode::TwoKey);
    let rules = Rules {
        policy: &two_key,
        force: false,
        lock_ttl: None,
    };
    let plain = seen(vec![key("A", true, DAY)], vec![holds("A")]);
    assert_eq!(questions(&plain, rules), Questions::default());
    let orphaned = seen(
        vec![key("OLD", true, 2 * DAY), key("ORPH", true, DAY)],
        vec![holds("OLD")],
    );
    assert_eq!(questions(&orphaned, rules).usage, vec!["ORPH".to_string()]);
    let staged_policy = policy(7, Mode::Staged);
    let staged_rules = Rules {
        policy: &staged_policy,
        ..rules
    };
    let two = seen(
        vec![key("OLD", true, 20 * DAY), key("NEW", true, DAY)],
        vec![holds("NEW")],
    );
    let q = questions(&two, staged_rules);
    assert!(q.tags && q.usage.len() == 2, "{q:?}");
}

#[test]
fn current_breaks_same_second_ties_toward_the_stored_key() {
    let keys = [key("AKIAZZZ", true, 5), key("AKIAAAA", true, 5)];
    let protected: BTreeSet<String> = ["AKIAAAA".to_string()].into();
    assert_eq!(current(&keys, &protected).unwrap().id, "AKIAAAA");
    assert_eq!(current(&keys, &BTreeSet::new()).unwrap().id, "AKIAZZZ");
    let older_active = [key("ON", true, 50), key("OFF", false, 5)];
    assert_eq!(current(&older_active, &BTreeSet::new()).unwrap().id, "ON");
}

#[test]
fn a_dry_run_reads_the_same_steps() {
    let locations = vec!["file:a.json".to_string(), "ssm:/p".to_string()];
    let texts: Vec<String> = rotation(vec![delete("OLD", "LAST key")], 2)
        .iter()
        .map(|s| s.describe(&locations))
        .collect();
    assert_eq!(
        texts,
        [
            "delete OLD (LAST key)",
            "create a new key",
            "write the new key to file:a.json",
            "write the new key to ssm:/p",
            "verify the new key through STS",
            "make the new key current in every store",
        ]
    );
}

/// A store that hands out `id` but cannot give its secret back (GitHub).
fn by_id(id: &str) -> StoreView {
    StoreView {
        copy: false,
        held: Held::KeyId(id.to_string()),
        pending: None,
    }
}

#[test]
fn stores_that_hand_out_a_key_by_id_only() {
    let verify = |k: &str| Step::VerifyStored { key: k.into() };
    let cases = vec![
        Case {
            name: "beside a store holding the same key whole: rotated, that key is what a rollback puts back",
            seen: seen(vec![key("A", true, 10 * DAY)], vec![holds("A"), by_id("A")]),
            mode: Mode::TwoKey,
            steps: rotation(vec![], 2),
            end: End::Rotated,
        },
        Case {
            name: "alone with a young key: it serves its consumers, nothing is due",
            seen: seen(vec![key("A", true, DAY)], vec![by_id("A")]),
            mode: Mode::TwoKey,
            steps: vec![],
            end: End::Fresh,
        },
        Case {
            name: "the key it hands out is protected: LAST goes only when it is the other one",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("CUR", true, 10 * DAY)],
                vec![holds("CUR"), by_id("CUR")],
            ),
            mode: Mode::TwoKey,
            steps: rotation(vec![delete("OLD", "LAST key")], 2),
            end: End::Rotated,
        },
        Case {
            name: "lagging behind a whole store: filled from it, and the key it handed out survives the run",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("NEW", true, 10 * DAY)],
                vec![holds("NEW"), by_id("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![verify("NEW"), fill(1, "NEW")],
            end: End::Synced(String::new()),
        },
        Case {
            name: "never a repair source: a newer id-only key does not fill the whole store, the whole key fills it",
            seen: seen(
                vec![key("OLD", true, 20 * DAY), key("NEW", true, DAY)],
                vec![by_id("NEW"), holds("OLD")],
            ),
            mode: Mode::TwoKey,
            steps: vec![verify("OLD"), fill(0, "OLD")],
            end: End::Fresh,
        },
        Case {
            name: "an id IAM no longer has is repaired, then the due rotation runs (the filled key is what a rollback puts back)",
            seen: seen(vec![key("A", true, 10 * DAY)], vec![holds("A"), by_id("GONE")]),
            mode: Mode::TwoKey,
            steps: rotation(vec![verify("A"), fill(1, "A")], 2),
            end: End::Rotated,
        },
        Case {
            name: "an id IAM no longer has, alone: nothing to put back, so a new key is made",
            seen: seen(vec![], vec![by_id("GONE")]),
            mode: Mode::TwoKey,
            steps: rotation(vec![], 1),
            end: End::Rotated,
        },
    ];
    check(cases, 7, false);

    // With other runs possible: a young key handed out by id only and not yet by the
    // whole store is another run's rotation in progress.
    let busy = vec![Case {
        name: "a young key only the id-only store hands out is in flight",
        seen: seen(
            vec![key("OLD", true, 20 * DAY), key("NEW", true, 60)],
            vec![by_id("NEW"), holds("OLD")],
        ),
        mode: Mode::TwoKey,
        steps: vec![],
        end: End::Busy(String::new()),
    }];
    check(busy, 7, true);
}

#[test]
fn an_id_only_key_that_no_store_holds_whole_is_never_rotated_away() {
    let policy = policy(7, Mode::TwoKey);
    // Alone, due: a rollback could not put A back, so nothing is done at all.
    let alone = seen(vec![key("A", true, 10 * DAY)], vec![by_id("A")]);
    assert!(matches!(
        run(&alone, &policy, false),
        Err(PlanError::CannotRestore { key_id, index: 0, .. }) if key_id == "A"
    ));
    // Beside a store that holds nothing: that store is starved, but the rotation that
    // would feed it could not be undone in the id-only store either.
    let starved = seen(vec![key("A", true, DAY)], vec![empty(), by_id("A")]);
    assert!(matches!(
        run(&starved, &policy, false),
        Err(PlanError::CannotRestore { key_id, index: 1, .. }) if key_id == "A"
    ));
    // A whole copy (the -o file) is enough to put it back.
    let copied = seen(
        vec![key("A", true, 10 * DAY)],
        vec![by_id("A"), copy_holding("A")],
    );
    let plan = run(&copied, &policy, false).unwrap();
    assert_eq!(plan.end, End::Rotated);
}
