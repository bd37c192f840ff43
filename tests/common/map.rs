// A hand-built device map mirroring the Heidelberg Energy Control registers
// (wallbox-register-facts.md §3.1). Included by the simulator's unit and integration tests;
// the includer imports the `devicemap` names it uses.

fn reg(name: &str, table: Table, address: u16, ty: ValueType, scale: f64) -> Register {
    Register {
        scale,
        ..Register::new(name, table, address, ty)
    }
}

/// The Heidelberg-like map: IR 4 layout, 5 state, 6-8 currents (0.1 A), 9 temperature,
/// 10-12 voltages, 14 power, 17-18 energy (u32 Wh); HR 257 watchdog (ms), 258 standby,
/// 261 limit (0.1 A), 262 failsafe (0.1 A).
pub fn test_map() -> DeviceMap {
    use Table::{Holding, Input};
    use ValueType::{I16, U16, U32};
    let registers = vec![
        reg("layout_version", Input, 4, U16, 1.0),
        reg("state", Input, 5, U16, 1.0),
        reg("current_l1", Input, 6, U16, 0.1),
        reg("current_l2", Input, 7, U16, 0.1),
        reg("current_l3", Input, 8, U16, 0.1),
        reg("temperature", Input, 9, I16, 0.1),
        reg("voltage_l1", Input, 10, U16, 1.0),
        reg("voltage_l2", Input, 11, U16, 1.0),
        reg("voltage_l3", Input, 12, U16, 1.0),
        reg("power", Input, 14, U16, 1.0),
        reg("energy", Input, 17, U32, 1.0),
        reg("watchdog", Holding, 257, U16, 1.0),
        reg("standby", Holding, 258, U16, 1.0),
        reg("limit", Holding, 261, U16, 0.1),
        reg("failsafe", Holding, 262, U16, 0.1),
    ];
    let id = |name: &str| registers.iter().position(|r| r.name == name).unwrap();
    let status = [
        (2, "A"),
        (3, "A"),
        (4, "B1"),
        (5, "B2"),
        (6, "C1"),
        (7, "C2"),
        (8, "C2"),
        (9, "E"),
        (10, "F"),
        (11, "F"),
    ]
    .into_iter()
    .map(|(k, s)| (StatusKey::Number(k), Iec61851State::parse(s).unwrap()))
    .collect();
    let phases = |m: &str, names: [(&str, &str); 3]| MeasurandSpec {
        measurand: m.into(),
        sources: names
            .iter()
            .map(|(p, n)| (Some((*p).to_owned()), id(n)))
            .collect(),
        counts: Counts::Lifetime,
    };
    let single = |m: &str, n: &str| MeasurandSpec {
        measurand: m.into(),
        sources: vec![(None, id(n))],
        counts: Counts::Lifetime,
    };
    DeviceMap {
        name: "heidelberg-test".into(),
        vendor: "Heidelberg".into(),
        model: "Energy Control".into(),
        connectors: 1,
        modbus: ModbusSettings {
            serial: Some(SerialSettings {
                baud: 19200,
                parity: Parity::Even,
                data_bits: 8,
                stop_bits: 1,
            }),
            unit: 1,
            request_delay: std::time::Duration::from_millis(100),
            timeout: std::time::Duration::from_secs(1),
            retries: 2,
            max_registers_per_read: 125,
            max_gap: 8,
            write_function: WriteFunction::Multiple,
        },
        identity: Identity {
            firmware: Some(IdentityValue::Register {
                register: id("layout_version"),
                format: Some("layout {}".into()),
            }),
            serial: None,
        },
        status: StatusSpec {
            register: id("state"),
            map: status,
            vehicle: None,
        },
        measurands: vec![
            single("Energy.Active.Import.Register", "energy"),
            single("Power.Active.Import", "power"),
            phases(
                "Current.Import",
                [("L1", "current_l1"), ("L2", "current_l2"), ("L3", "current_l3")],
            ),
            phases(
                "Voltage",
                [("L1-N", "voltage_l1"), ("L2-N", "voltage_l2"), ("L3-N", "voltage_l3")],
            ),
            single("Temperature", "temperature"),
        ],
        control: ControlSpec {
            power_limit: None,
            current_limit: Some(CurrentLimitSpec {
                register: id("limit"),
                min: 6.0,
                max: 16.0,
                off_value: 0.0,
            }),
            enable: None,
            refresh: None,
            failsafe_current: Some(id("failsafe")),
        },
        init: vec![WriteSpec {
            register: id("standby"),
            value: 4.0,
        }],
        keepalive: Some(KeepaliveSpec {
            interval: KeepaliveInterval::FromRegister {
                register: id("watchdog"),
                unit: TimeUnit::Ms,
                divide: 4,
            },
            action: KeepaliveAction::Read(id("state")),
        }),
        registers,
    }
}
