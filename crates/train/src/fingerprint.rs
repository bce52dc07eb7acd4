//! A member's identity: its seed, the fingerprint of everything that determines its final
//! weights, and its files.

use std::path::PathBuf;

use ferbayes_core::{Arch, LabelMode, Method};
use serde::Serialize;

use crate::combo::Combo;

/// Everything that determines a member's final weights, hashed into its fingerprint.
#[derive(Serialize)]
pub(crate) struct FingerprintInput<'a> {
    arch: Arch,
    method: Method,
    member: usize,
    seed: u64,
    batch_size: usize,
    label_mode: LabelMode,
    arch_settings: &'a ferbayes_core::ArchTrainSettings,
    train_faces: usize,
    valid_faces: usize,
    ferbayes_version: &'static str,
}

pub(crate) fn fingerprint(input: &FingerprintInput<'_>) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(input).unwrap_or_default();
    format!("{:x}", sha2::Sha256::digest(json))
}

/// One member to train: its seed, fingerprint and files.
#[derive(Debug, Clone)]
pub(crate) struct MemberJob {
    pub(crate) member: usize,
    pub(crate) seed: u64,
    pub(crate) fingerprint: String,
    pub(crate) weights: PathBuf,
    pub(crate) checkpoint: PathBuf,
}

impl MemberJob {
    pub(crate) fn new(combo: Combo<'_>, member: usize) -> Self {
        let Combo {
            layout,
            settings,
            arch,
            method,
            data: (train, valid),
        } = combo;
        let seed = settings.seed.wrapping_add(member as u64);
        let fingerprint = fingerprint(&FingerprintInput {
            arch,
            method,
            member,
            seed,
            batch_size: settings.train.batch_size,
            label_mode: settings.train.label_mode,
            arch_settings: settings.train.arch(arch),
            train_faces: train.len(),
            valid_faces: valid.len(),
            ferbayes_version: env!("CARGO_PKG_VERSION"),
        });
        MemberJob {
            member,
            seed,
            fingerprint,
            weights: layout.member_weights(arch, method, member),
            checkpoint: layout.member_checkpoint(arch, method, member),
        }
    }
}
