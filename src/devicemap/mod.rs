//! The device-map format: a wallbox model's Modbus interface, described in YAML.
//!
//! - [`model`]: the validated types the rest of the gateway uses
//! - [`load`]: YAML -> validated [`DeviceMap`], every problem located by line and column
//! - [`builtin`]: the maps compiled into the binary, and name/path resolution
//! - [`mod@plan`]: block reads coalesced from the registers of each poll class (pure)
//! - [`codec`]: registers <-> values (pure)
//! - [`image`]: the words last read from a device and their decoded values
//! - [`describe()`]: a readable summary for `chargebridge maps --show`

pub mod builtin;
pub mod codec;
mod describe;
mod fields;
pub mod image;
pub mod load;
pub mod model;
pub mod plan;
mod tree;

pub use builtin::{builtin_names, builtin_source, resolve};
pub use codec::Value;
pub use describe::describe;
pub use image::RegisterImage;
pub use load::{load_file, load_str};
pub use model::*;
pub use plan::{ReadBlock, plan, split};
