//! The FER+ rules on hand-made vote rows. Expected values are hand-computed and confirmed by
//! `tests/reference/ferplus_rules.py`, an independent plain-Python transcription of
//! microsoft/FERPlus `_process_data` (run it to reprint them).

use ferbayes_ingest::Labels;

const E: f32 = 1e-6;

fn close(got: Option<[f32; 8]>, want: Option<[f32; 8]>, what: &str, votes: &[u8; 10]) {
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) => {
            for k in 0..8 {
                assert!(
                    (g[k] - w[k]).abs() < E,
                    "{what} of {votes:?}: got {g:?}, want {w:?}"
                );
            }
        }
        _ => panic!("{what} of {votes:?}: got {got:?}, want {want:?}"),
    }
}

struct Case {
    votes: [u8; 10],
    majority: Option<u8>,
    soft: Option<[f32; 8]>,
    multi: Option<[f32; 8]>,
    crowd: Option<[f32; 8]>,
    entropy: Option<f32>,
}

fn check(case: Case) {
    let l = Labels::from_votes(&case.votes);
    assert_eq!(l.majority, case.majority, "majority of {:?}", case.votes);
    close(l.soft, case.soft, "soft", &case.votes);
    close(l.multi_target, case.multi, "multi_target", &case.votes);
    close(l.crowd, case.crowd, "crowd", &case.votes);
    match (l.crowd_entropy, case.entropy) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-5, "entropy {g} vs {w}"),
        (g, w) => panic!("entropy of {:?}: got {g:?}, want {w:?}", case.votes),
    }
}

const Z: [f32; 8] = [0.0; 8];

fn one_hot(k: usize) -> [f32; 8] {
    let mut v = Z;
    v[k] = 1.0;
    v
}

#[test]
fn single_vote_outliers_are_removed_before_the_rules() {
    // fer0000000: the sadness vote (1) is an outlier, S = 9; 4 is not > 4.5 so no majority;
    // crossentropy takes neutral (4) then anger (3): 7 >= 6.75 stops.
    check(Case {
        votes: [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],
        majority: None,
        soft: Some([4.0 / 7.0, 0.0, 0.0, 0.0, 3.0 / 7.0, 0.0, 0.0, 0.0]),
        multi: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
        crowd: Some([0.4, 0.0, 0.0, 0.1, 0.3, 0.2, 0.0, 0.0]),
        entropy: Some(1.279_854),
    });
    // every class a single vote: nothing survives, but the crowd is uniform.
    check(Case {
        votes: [1; 10],
        majority: None,
        soft: None,
        multi: None,
        crowd: Some([0.125; 8]),
        entropy: Some(8f32.ln()),
    });
}

#[test]
fn five_five_split_has_no_majority_but_a_soft_target() {
    check(Case {
        votes: [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
        majority: None,
        soft: Some([0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        multi: Some([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        crowd: Some([0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        entropy: Some(2f32.ln()),
    });
}

#[test]
fn clear_majority() {
    check(Case {
        votes: [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],
        majority: Some(1),
        soft: Some(one_hot(1)),
        multi: Some(one_hot(1)),
        crowd: Some(one_hot(1)),
        entropy: Some(0.0),
    });
    // unknown taken after neutral in the second round is put back; NF's single vote is noise.
    check(Case {
        votes: [6, 0, 0, 0, 0, 0, 0, 0, 3, 1],
        majority: Some(0),
        soft: Some(one_hot(0)),
        multi: Some(one_hot(0)),
        crowd: Some(one_hot(0)),
        entropy: Some(0.0),
    });
}

#[test]
fn unknown_or_not_a_face_winners_drop_the_face() {
    check(Case {
        votes: [2, 0, 0, 0, 0, 0, 0, 0, 8, 0],
        majority: None,
        soft: None,
        multi: None,
        crowd: Some(one_hot(0)),
        entropy: Some(0.0),
    });
    check(Case {
        votes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
        majority: None,
        soft: None,
        multi: None,
        crowd: None,
        entropy: None,
    });
    check(Case {
        votes: [0; 10],
        majority: None,
        soft: None,
        multi: None,
        crowd: None,
        entropy: None,
    });
}

#[test]
fn ties_with_not_a_face_and_too_many_classes() {
    // NF ties neutral at 4 in the first round: NF is put back, leaving 4 <= 0.5·10 → dropped;
    // multi_target keeps neutral and NF (both >= 3) and peaks first at neutral.
    check(Case {
        votes: [4, 0, 2, 0, 0, 0, 0, 0, 0, 4],
        majority: None,
        soft: None,
        multi: Some(one_hot(0)),
        crowd: Some([2.0 / 3.0, 0.0, 1.0 / 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        entropy: Some(0.636_514),
    });
    // three-way tie taken in one round (3 classes allowed).
    let third = 1.0 / 3.0;
    check(Case {
        votes: [3, 3, 3, 0, 0, 0, 0, 0, 1, 0],
        majority: None,
        soft: Some([third, third, third, 0.0, 0.0, 0.0, 0.0, 0.0]),
        multi: Some([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        crowd: Some([third, third, third, 0.0, 0.0, 0.0, 0.0, 0.0]),
        entropy: Some(3f32.ln()),
    });
    // five-way tie: more than 3 classes → dropped.
    check(Case {
        votes: [2, 2, 2, 2, 2, 0, 0, 0, 0, 0],
        majority: None,
        soft: None,
        multi: None,
        crowd: Some([0.2, 0.2, 0.2, 0.2, 0.2, 0.0, 0.0, 0.0]),
        entropy: Some(5f32.ln()),
    });
    // 1 class then a three-way tie: 4 classes → dropped.
    check(Case {
        votes: [3, 2, 2, 2, 0, 0, 0, 0, 0, 1],
        majority: None,
        soft: None,
        multi: None,
        crowd: Some([
            3.0 / 9.0,
            2.0 / 9.0,
            2.0 / 9.0,
            2.0 / 9.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ]),
        entropy: Some(1.368_922),
    });
}
