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
    }
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
        let err = "resnet".parse::<Arch>().expect_err("unknown");
        assert!(
            err.contains("resnet") && err.contains("alexnet, vgg16, densenet121"),
            "{err}"
        );
    }
}
