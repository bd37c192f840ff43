//! The device-map format: a wallbox model's Modbus interface, described in YAML.
//!
//! - [`model`]: the validated types the rest of the gateway uses
//! - [`codec`]: registers <-> values (pure)
//! - [`image`]: the words last read from a device and their decoded values

pub mod codec;
pub mod image;
pub mod model;

pub use codec::Value;
pub use image::RegisterImage;
pub use model::*;
