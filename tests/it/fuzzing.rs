//! The fuzz targets' bodies (`icecast_balancer::fuzzing`, run for hours by
//! `cargo fuzz` in `fuzz/`, which needs nightly) run here on every test
//! run: a few thousand inputs each, mutated from the corpus by a seeded
//! generator, so a failure is reproducible from its seed.

use icecast_balancer::fuzzing;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bytes that matter to the parsers: markup, separators, digits, escapes.
const INTERESTING: &[u8] = b"<>/\"'&;=,:[]{}\\\n\r\t 0123456789-+.%#!?@_x\x00\xff";

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(format!("{dir}{target}"))
        .map(|d| {
            d.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    seeds.push(Vec::new());
    seeds
}

/// One mutation of `input`: a flipped bit, an inserted, deleted or
/// repeated run, or a splice with another seed.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let at = |rng: &mut StdRng, v: &Vec<u8>| rng.random_range(0..=v.len());
    match rng.random_range(0..5) {
        0 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let i = at(rng, input);
            let b = INTERESTING[rng.random_range(0..INTERESTING.len())];
            input.insert(i, b);
        }
        2 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            let n = rng.random_range(1..=(input.len() - i).min(16));
            input.drain(i..i + n);
        }
        3 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            let n = rng.random_range(1..=(input.len() - i).min(64));
            let run = input[i..i + n].to_vec();
            let j = at(rng, input);
            input.splice(j..j, run);
        }
        _ => {
            let other = &seeds[rng.random_range(0..seeds.len())];
            let cut = at(rng, input);
            let from = at(rng, other);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
    }
    input.truncate(64 * 1024);
}

/// Runs `body` on `runs` inputs, each a few mutations away from a seed.
fn exercise(target: &str, extra: &[&[u8]], runs: u64, body: fn(&[u8])) {
    let mut seeds = corpus(target);
    seeds.extend(extra.iter().map(|s| s.to_vec()));
    for seed in 0..runs {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..8) {
            mutate(&mut rng, &mut input, &seeds);
        }
        let run = std::panic::catch_unwind(|| body(&input));
        assert!(
            run.is_ok(),
            "{target}: seed {seed} broke it with {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn load_xsl_parser_survives_mutated_answers() {
    exercise(
        "load_xsl",
        &[b"<load listener_connections=\"5\"><mount name=\"/a\" listeners=\"1\" max=\"2\">1</mount></load>"],
        4_000,
        fuzzing::load_xsl,
    );
}

#[test]
fn status_json_parser_survives_mutated_answers() {
    exercise(
        "status_json",
        &[br#"{"icestats":{"source":[{"listenurl":"http://r:8000/a","listeners":1,"max_listeners":"unlimited"}]}}"#],
        4_000,
        fuzzing::status_json,
    );
}

#[test]
fn import_file_parser_survives_mutated_files() {
    exercise(
        "config_toml",
        &[b"[[servers]]\nname = \"a\"\nurl = \"http://a:8000\"\nlatitude = 50.1\n[[streams]]\nname = \"live\"\nallowed_countries = [\"DE\"]\nmounts = [{ server = \"a\", mount = \"/live.mp3\", max_listeners = 5 }]\n"],
        2_000,
        fuzzing::config_toml,
    );
}

#[test]
fn admin_form_parsers_survive_mutated_posts() {
    exercise(
        "admin_forms",
        &[
            b"name=fra-1&url=http%3A%2F%2Fa%3A8000&https_url=&poll_url=&country=DE&latitude=50.1&longitude=8.6&max_listeners=100&weight=100&enabled=on&csrf_token=x",
            b"name=live&description=Live&mounts=a+%2Flive.mp3&allowed_countries=DE%2C+FR&allow_unknown=on&https_only=&fallback_url=http%3A%2F%2Fx%2Fy.mp3",
        ],
        4_000,
        fuzzing::admin_forms,
    );
}

#[test]
fn forwarding_header_parsers_survive_mutated_headers() {
    exercise(
        "forwarded",
        &[
            b"for=192.0.2.1;proto=https, for=\"[2001:db8::1]:4711\"",
            b"203.0.113.7, 10.0.0.1, 127.0.0.1",
            b"198.51.100.2",
        ],
        4_000,
        fuzzing::forwarded,
    );
}
