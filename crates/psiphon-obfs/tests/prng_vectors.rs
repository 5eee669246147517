//! tunnel-core's seeded PRNG against `prng.json`.

// Test helpers outside #[test] functions stop the test on bad vector data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{array, bytes, list, load, text};
use psiphon_obfs::prng::{Prng, PrngSeed};

fn seed(v: &serde_json::Value) -> PrngSeed {
    PrngSeed::new(array(v, "seed"))
}

#[test]
fn raw_streams_match() {
    let doc = load("prng.json");
    let cases = list(&doc, "stream");
    assert!(!cases.is_empty());
    for case in cases {
        let mut prng = Prng::new(&seed(case));
        assert_eq!(prng.bytes(256), bytes(case, "first_256_bytes"));
    }
}

#[test]
fn operation_sequences_match() {
    let doc = load("prng.json");
    let mut checked = 0;
    for case in list(&doc, "ops") {
        let mut prng = Prng::new(&seed(case));
        for op in list(case, "ops") {
            let name = text(op, "op");
            let args = list(op, "args");
            let arg = |i: usize| usize::try_from(args[i].as_u64().unwrap()).unwrap();
            let expect_num = || op["result"].as_u64().unwrap();
            let expect_dec = || op["result"].as_str().unwrap().parse::<u64>().unwrap();
            match name {
                "Intn" => assert_eq!(prng.intn(arg(0)) as u64, expect_num(), "Intn({})", arg(0)),
                "Range" => assert_eq!(prng.range(arg(0), arg(1)) as u64, expect_num()),
                "Int63n" => assert_eq!(prng.int63n(arg(0) as u64), expect_num()),
                "Int63" => assert_eq!(prng.int63(), expect_dec()),
                "Uint64" => assert_eq!(prng.uint64(), expect_dec()),
                "Bytes" => assert_eq!(prng.bytes(arg(0)), bytes(op, "result")),
                "FlipWeightedCoin" => assert_eq!(
                    prng.flip_weighted_coin(args[0].as_f64().unwrap()),
                    op["result"].as_bool().unwrap()
                ),
                "Perm" => {
                    let expected: Vec<usize> = list(op, "result")
                        .iter()
                        .map(|v| usize::try_from(v.as_u64().unwrap()).unwrap())
                        .collect();
                    assert_eq!(prng.perm(arg(0)), expected);
                }
                "Padding" => {
                    let padding = prng.padding(arg(0), arg(1));
                    assert_eq!(
                        padding.len(),
                        usize::try_from(op["result_length"].as_u64().unwrap()).unwrap()
                    );
                    assert_eq!(&padding[..64], bytes(op, "result_first_64").as_slice());
                }
                other => panic!("prng.json has an operation this test does not know: {other}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} operations checked");
}

#[test]
fn salted_seeds_match() {
    let doc = load("prng.json");
    for case in list(&doc, "salted_seed") {
        let salted = seed(case).salted(text(case, "salt")).unwrap();
        assert_eq!(
            salted.as_bytes().as_slice(),
            bytes(case, "salted_seed").as_slice()
        );
    }
}
