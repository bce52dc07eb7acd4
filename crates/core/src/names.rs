//! The names stages share: architectures, uncertainty methods, label modes, optimisers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        /// The first value, only so that a table row read without its column (a column
        /// projection) has a value there.
        impl Default for $name {
            fn default() -> Self {
                Self::ALL[0]
            }
        }

        impl $name {
            /// Every value, in canonical order.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            /// The name used in settings, artifact paths and tables.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                    let known: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} `{s}` (expected one of: {})", stringify!($name), known.join(", "))
                })
            }
        }
    };
}

named_enum! {
    /// A network architecture.
    Arch {
        /// AlexNet with BatchNorm after every layer, FC 256.
        AlexNet => "alexnet",
        /// The 13 convolutions of VGG16, FC 256.
        Vgg16 => "vgg16",
        /// DenseNet-121 with dropout inside the dense layers.
        DenseNet121 => "densenet121",
    }
}

named_enum! {
    /// An uncertainty method.
    Method {
        /// Dropout kept on at inference; T stochastic passes.
        McDropout => "mc_dropout",
        /// Bernoulli masks on weights, kept on at inference; T stochastic passes.
        McDropConnect => "mc_dropconnect",
        /// N independently initialised members.
        Ensemble => "ensemble",
        /// Mean-field Gaussian weights trained by variational inference (Bayes by Backprop,
        /// Blundell et al. 2015) with Flipout (Wen et al. 2018); T stochastic passes.
        Variational => "variational",
        /// SWA-Gaussian (Maddox et al. 2019): a Gaussian fitted to the SGD trajectory.
        Swag => "swag",
        /// Last-layer Laplace approximation around the trained network.
        Laplace => "laplace",
        /// BatchEnsemble (Wen et al. 2020): members sharing one slow weight per layer, each
        /// with its own rank-one fast weights.
        BatchEnsemble => "batch_ensemble",
    }
}

impl Method {
    /// The study's three methods (Matin & Valdenegro-Toro), in canonical order: what the
    /// profiles list and the study's tables and figures compare. [`Method::ALL`] adds the
    /// methods ferbayes adds after them.
    pub const STUDY: [Method; 3] = [Method::McDropout, Method::McDropConnect, Method::Ensemble];
}

named_enum! {
    /// The training target.
    LabelMode {
        /// Cross-entropy on the FER+ majority class (faces without one are skipped).
        Majority => "majority",
        /// Cross-entropy against the FER+ soft (`crossentropy`) target.
        CrossEntropy => "crossentropy",
        /// A class sampled from the soft target each time a face is served.
        Probability => "probability",
    }
}

named_enum! {
    /// The optimiser of an architecture.
    OptimizerKind {
        /// Adam (Kingma & Ba), optional decoupled weight decay.
        Adam => "adam",
        /// SGD with (PyTorch-style) momentum.
        Sgd => "sgd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for a in Arch::ALL {
            assert_eq!(a.as_str().parse::<Arch>(), Ok(a));
        }
        for m in Method::ALL {
            assert_eq!(m.to_string().parse::<Method>(), Ok(m));
        }
        let names: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            names,
            [
                "mc_dropout",
                "mc_dropconnect",
                "ensemble",
                "variational",
                "swag",
                "laplace",
                "batch_ensemble"
            ]
        );
        assert_eq!(Method::STUDY, Method::ALL[..3]);
        let err = "resnet".parse::<Arch>().expect_err("unknown");
        assert!(
            err.contains("resnet") && err.contains("alexnet, vgg16, densenet121"),
            "{err}"
        );
    }
}
