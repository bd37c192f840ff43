//! Each shipped map decodes register words as the wallbox sends them (values taken from the
//! register facts: wallbox-register-facts.md §3, §4): the IEC 61851 state and the values an
//! installer would compare with the wallbox's display.
#![allow(clippy::unwrap_used, clippy::float_cmp)]

use chargebridge::devicemap::{self, DeviceMap, Iec61851State as S, RegisterImage, Table, Value};

fn map(name: &str) -> DeviceMap {
    devicemap::resolve(name, &[]).unwrap()
}

/// An image holding the given blocks of words.
fn image(blocks: &[(Table, u16, &[u16])]) -> RegisterImage {
    let mut img = RegisterImage::default();
    for (table, start, words) in blocks {
        img.insert_block(*table, *start, words);
    }
    img
}

fn state(map: &DeviceMap, img: &RegisterImage) -> S {
    img.iec_state(map).unwrap().unwrap()
}

fn num(map: &DeviceMap, img: &RegisterImage, name: &str) -> Option<f64> {
    img.number(map, map.register_id(name).unwrap())
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-6)
}

use Table::{Holding, Input};

#[test]
fn heidelberg_state_scales_signed_temperature_and_energy() {
    let m = map("heidelberg-energy-control");
    // IR 4..18: layout 1.0.8, state 7 (C2), 16.0 A x3, -2.0 °C, 230 V x3, unlocked, 11040 W,
    // 4660 Wh since power-on, 100000 Wh lifetime.
    let img = image(&[(
        Input,
        4,
        &[
            0x0108, 7, 160, 160, 160, 0xFFEC, 230, 230, 230, 1, 11040, 0x0000, 0x1234, 0x0001,
            0x86A0,
        ],
    )]);
    assert_eq!(state(&m, &img), S::C2);
    assert!(close(num(&m, &img, "current_l1"), 16.0));
    assert!(close(num(&m, &img, "temperature"), -2.0));
    assert!(close(num(&m, &img, "energy"), 100_000.0));
    let img = image(&[(Input, 5, &[4])]);
    assert_eq!(state(&m, &img), S::B1);
    let img = image(&[(Input, 5, &[1])]);
    assert_eq!(
        img.iec_state(&m),
        Some(Err("1".into())),
        "undefined -> Faulted"
    );
}

#[test]
fn abb_state_is_byte_2_without_bit_7() {
    let m = map("abb-terra-ac");
    // 0x400C: 4 bytes, the state in byte 2; bit 7 = "below the commanded current".
    for (words, want) in [
        ([0x0000, 0x0400], S::C2),
        ([0x0000, 0x8400], S::C2),
        ([0x0000, 0x0100], S::B1),
        ([0x0000, 0x0200], S::B2),
        ([0x0000, 0x0000], S::A),
        ([0x0000, 0x0300], S::C1),
    ] {
        assert_eq!(
            state(&m, &image(&[(Holding, 0x400C, &words)])),
            want,
            "{words:X?}"
        );
    }
    // 16000 mA, 230.0 V in 0.1 V, 11040 W.
    let img = image(&[
        (Holding, 0x4010, &[0x0000, 0x3E80]),
        (Holding, 0x4016, &[0x0000, 0x08FC]),
        (Holding, 0x401C, &[0x0000, 0x2B20]),
    ]);
    assert!(close(num(&m, &img, "current_l1"), 16.0));
    assert!(close(num(&m, &img, "voltage_l1"), 230.0));
    assert!(close(num(&m, &img, "power"), 11040.0));
}

#[test]
fn mennekes_compact_cp_state_and_kwh_float() {
    let m = map("mennekes-amtron-compact");
    assert_eq!(state(&m, &image(&[(Holding, 0x0108, &[28])])), S::C2);
    assert_eq!(state(&m, &image(&[(Holding, 0x0108, &[26])])), S::A);
    assert_eq!(state(&m, &image(&[(Holding, 0x0108, &[27])])), S::B2);
    assert_eq!(state(&m, &image(&[(Holding, 0x0108, &[15])])), S::F);
    // 12.5 kWh as f32 high word first = 0x4148_0000 -> 12500 Wh.
    let img = image(&[(Holding, 0x1000, &[0x4148, 0x0000])]);
    assert!(close(num(&m, &img, "energy"), 12_500.0));
    // The heartbeat is written with 0x55AA and never read.
    assert!(
        devicemap::plan(
            &m,
            &[
                devicemap::PollClass::Always,
                devicemap::PollClass::Slow,
                devicemap::PollClass::Once
            ]
        )
        .iter()
        .all(|b| !(b.table == Holding && b.start <= 0x0D00 && b.last_address() >= 0x0D00))
    );
}

#[test]
fn schrack_cp_state_is_an_ascii_letter() {
    let m = map("schrack-icharge-cion");
    assert_eq!(
        state(&m, &image(&[(Holding, 139, &[u16::from(b'C')])])),
        S::C2
    );
    assert_eq!(
        state(&m, &image(&[(Holding, 139, &[u16::from(b'A')])])),
        S::A
    );
    assert_eq!(
        state(&m, &image(&[(Holding, 139, &[u16::from(b'B')])])),
        S::B2
    );
    assert_eq!(
        image(&[(Holding, 139, &[u16::from(b'U')])]).iec_state(&m),
        Some(Err("85".into())),
        "unknown letters are reported as faults with the raw value"
    );
}

#[test]
fn evse_din_vehicle_state() {
    let m = map("evse-wb-din");
    assert_eq!(state(&m, &image(&[(Holding, 1002, &[1])])), S::A);
    assert_eq!(state(&m, &image(&[(Holding, 1002, &[3])])), S::C2);
    assert_eq!(state(&m, &image(&[(Holding, 1002, &[5])])), S::F);
}

#[test]
fn delta_ocpp_like_state_and_power() {
    let m = map("delta-ac-max");
    assert_eq!(state(&m, &image(&[(Input, 1000, &[4])])), S::C2);
    assert_eq!(state(&m, &image(&[(Input, 1000, &[1])])), S::A);
    assert_eq!(state(&m, &image(&[(Input, 1000, &[6])])), S::B2);
    assert_eq!(state(&m, &image(&[(Input, 1000, &[9])])), S::E);
    let img = image(&[(Input, 1005, &[0x0000, 0x2B20])]);
    assert!(close(num(&m, &img, "charging_power"), 11040.0));
    // The limit is in watts: 16 A on 3 phases at 230 V.
    let p = m.control.power_limit.as_ref().unwrap();
    assert_eq!(p.watts(Some(16.0), 32.0, 3, 230.0), 11040.0);
    assert_eq!(p.watts(Some(5.0), 32.0, 1, 230.0), 0.0, "below 1380 W: off");
    assert_eq!(p.watts(None, 32.0, 3, 230.0), 0.0);
    assert_eq!(
        p.watts(Some(32.0), 32.0, 3, 230.0),
        22_000.0,
        "capped at max_w"
    );
}

#[test]
fn alfen_string_state_float_energy_and_nan() {
    let m = map("alfen-eve-single");
    let c2 = [u16::from_be_bytes(*b"C2"), 0, 0, 0, 0];
    assert_eq!(state(&m, &image(&[(Holding, 1201, &c2)])), S::C2);
    let b1 = [u16::from_be_bytes(*b"B1"), 0, 0, 0, 0];
    assert_eq!(state(&m, &image(&[(Holding, 1201, &b1)])), S::B1);
    let a = [u16::from_be_bytes([b'A', 0]), 0, 0, 0, 0];
    assert_eq!(state(&m, &image(&[(Holding, 1201, &a)])), S::A);
    // 1234.5 Wh as f64 = 0x40934A0000000000; power NaN (no meter value) = unavailable.
    let img = image(&[
        (Holding, 374, &[0x4093, 0x4A00, 0x0000, 0x0000]),
        (Holding, 344, &[0x7FC0, 0x0000]),
    ]);
    assert!(close(num(&m, &img, "energy"), 1234.5));
    assert_eq!(num(&m, &img, "power"), None);
}

#[test]
fn bender_cp_state_and_no_meter_sentinel() {
    let m = map("bender-cc613");
    assert_eq!(state(&m, &image(&[(Holding, 122, &[3])])), S::C2);
    assert_eq!(state(&m, &image(&[(Holding, 122, &[1])])), S::A);
    assert_eq!(state(&m, &image(&[(Holding, 122, &[5])])), S::E);
    let img = image(&[
        (Holding, 218, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        (Holding, 212, &[0x0000, 0x3E80]),
    ]);
    assert_eq!(num(&m, &img, "energy"), None, "0xFFFFFFFF = no meter");
    assert_eq!(num(&m, &img, "power"), None);
    assert!(close(num(&m, &img, "current_l1"), 16.0));
}

#[test]
fn vestel_state_needs_the_cable_register() {
    let m = map("vestel-evc04");
    let both =
        |cp: u16, cable: u16| state(&m, &image(&[(Input, 1000, &[cp]), (Input, 1004, &[cable])]));
    assert_eq!(both(2, 3), S::C2, "charging, cable locked in the EV");
    assert_eq!(both(4, 2), S::B2, "SuspendedEV");
    assert_eq!(both(1, 0), S::A, "Preparing but no cable: no vehicle");
    assert_eq!(both(0, 1), S::A, "cable at the station only");
    assert_eq!(
        both(0, 2),
        S::B1,
        "Available with a vehicle on the cable: plugged"
    );
    assert_eq!(both(8, 0), S::F, "faults stand without a vehicle");
    // Before the cable register is read, the state register alone decides.
    assert_eq!(state(&m, &image(&[(Input, 1000, &[2])])), S::C2);
    // 0.1 kWh counter; mA currents; UTF-16 serial.
    let serial: Vec<u16> = "VS123"
        .encode_utf16()
        .chain(std::iter::repeat_n(0, 20))
        .collect();
    let img = image(&[
        (Input, 1036, &[0x0000, 1234]),
        (Input, 1008, &[16_000]),
        (Input, 100, &serial),
    ]);
    assert!(close(num(&m, &img, "energy"), 123_400.0));
    assert!(close(num(&m, &img, "current_l1"), 16.0));
    assert_eq!(
        img.value(&m, m.register_id("serial").unwrap()),
        Some(Value::Text("VS123".into()))
    );
}

#[test]
fn webasto_next_state_and_cable() {
    let m = map("webasto-next");
    let both = |cp: u16, cable: u16| {
        state(
            &m,
            &image(&[(Holding, 1000, &[cp]), (Holding, 1004, &[cable])]),
        )
    };
    assert_eq!(both(3, 3), S::C2);
    assert_eq!(both(1, 2), S::B1);
    assert_eq!(both(0, 0), S::A);
    assert_eq!(both(7, 3), S::F);
    let img = image(&[(Holding, 1036, &[0x0001, 0x86A0])]);
    assert!(close(num(&m, &img, "energy"), 100_000.0));
}

#[test]
fn keba_u32_state_cable_bit_and_units() {
    let m = map("keba-p30-x");
    let both = |st: u16, cable: u16| {
        state(
            &m,
            &image(&[(Holding, 1000, &[0, st]), (Holding, 1004, &[0, cable])]),
        )
    };
    assert_eq!(
        both(3, 7),
        S::C2,
        "charging, cable locked at station and EV"
    );
    assert_eq!(both(2, 5), S::B2, "ready, EV plugged");
    assert_eq!(both(1, 1), S::A, "cable at the station only: no vehicle");
    assert_eq!(both(2, 3), S::A, "cable locked at the station only");
    assert_eq!(both(4, 7), S::F);
    // 0.1 Wh and mW.
    let img = image(&[
        (Holding, 1036, &[0x0001, 0x0000]),
        (Holding, 1020, &[0x00A8, 0x7440]),
    ]);
    assert!(close(num(&m, &img, "energy"), 6553.6));
    assert!(close(num(&m, &img, "power"), 11_039.808));
    // One u32 per request.
    for b in devicemap::plan(
        &m,
        &[
            devicemap::PollClass::Always,
            devicemap::PollClass::Slow,
            devicemap::PollClass::Once,
        ],
    ) {
        assert_eq!(b.count, 2, "{b:?}");
    }
}

#[test]
fn phoenix_ascii_low_byte_and_swapped_words() {
    let m = map("phoenix-contact-ev-cc");
    assert_eq!(state(&m, &image(&[(Input, 100, &[0x0043])])), S::C2);
    assert_eq!(
        state(&m, &image(&[(Input, 100, &[0x1241])])),
        S::A,
        "only the low byte counts"
    );
    // Low word first: 100000 Wh = [0x86A0, 0x0001]; 230 V = [0x00E6, 0x0000].
    let img = image(&[
        (Holding, 904, &[0x86A0, 0x0001]),
        (Input, 108, &[0x00E6, 0x0000]),
        (Input, 120, &[0xFFFF, 0xFFFF]),
    ]);
    assert!(close(num(&m, &img, "energy"), 100_000.0));
    assert!(close(num(&m, &img, "voltage_l1"), 230.0));
    assert!(close(num(&m, &img, "power"), -1.0), "i32 low word first");
}

#[test]
fn charx_ascii_high_byte_and_milli_units() {
    let m = map("phoenix-contact-charx-sec");
    assert_eq!(state(&m, &image(&[(Holding, 1299, &[0x4300])])), S::C2);
    assert_eq!(state(&m, &image(&[(Holding, 1299, &[0x4141])])), S::A);
    let img = image(&[
        (Holding, 1232, &[0x0003, 0x8270]),
        (Holding, 1250, &[0, 0, 0x0001, 0x86A0]),
    ]);
    assert!(close(num(&m, &img, "voltage_l1"), 230.0));
    assert!(close(num(&m, &img, "energy"), 100_000.0));
}
