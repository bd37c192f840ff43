//! Every built-in device map loads, validates and plans; the Heidelberg map decodes recorded
//! words the way the register facts (wallbox-register-facts.md §3.1) say.

use std::time::Duration;

use chargebridge::devicemap::{
    DeviceMap, Iec61851State, KeepaliveAction, KeepaliveInterval, Parity, PollClass, ReadBlock,
    RegisterImage, Table, TimeUnit, Value, WriteFunction, builtin_names, builtin_source, codec,
    describe, plan, resolve,
};

fn heidelberg() -> DeviceMap {
    resolve("heidelberg-energy-control", &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn id(map: &DeviceMap, name: &str) -> usize {
    map.register_id(name)
        .unwrap_or_else(|| panic!("no register {name}"))
}

#[test]
fn every_builtin_map_loads_and_has_a_read_plan() {
    let names = builtin_names();
    assert!(names.contains(&"heidelberg-energy-control"), "{names:?}");
    for name in names {
        let map = resolve(name, &[]).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert_eq!(map.name, name);
        assert!(!plan(&map, &[PollClass::Always]).is_empty(), "{name}");
        assert!(builtin_source(name).is_some());
        assert!(describe(&map).contains(&map.vendor), "{name}");
    }
}

#[test]
fn heidelberg_bus_settings_match_the_facts() {
    let map = heidelberg();
    assert_eq!(map.vendor, "Heidelberg");
    assert_eq!(map.model, "Energy Control");
    let serial = map.modbus.serial.expect("serial defaults");
    assert_eq!(
        (
            serial.baud,
            serial.parity,
            serial.data_bits,
            serial.stop_bits
        ),
        (19200, Parity::Even, 8, 1)
    );
    assert_eq!(map.modbus.request_delay, Duration::from_millis(100));
    assert_eq!(map.modbus.write_function, WriteFunction::Multiple);
}

#[test]
fn heidelberg_registers_sit_at_the_documented_addresses() {
    let map = heidelberg();
    for (name, table, address, words) in [
        ("layout_version", Table::Input, 4, 1),
        ("state", Table::Input, 5, 1),
        ("current_l1", Table::Input, 6, 1),
        ("current_l3", Table::Input, 8, 1),
        ("temperature", Table::Input, 9, 1),
        ("voltage_l1", Table::Input, 10, 1),
        ("power", Table::Input, 14, 1),
        ("energy", Table::Input, 17, 2),
        ("hw_max_current", Table::Input, 100, 1),
        ("hw_min_current", Table::Input, 101, 1),
        ("watchdog", Table::Holding, 257, 1),
        ("standby", Table::Holding, 258, 1),
        ("limit", Table::Holding, 261, 1),
        ("failsafe", Table::Holding, 262, 1),
    ] {
        let r = map.register(id(&map, name));
        assert_eq!(
            (r.table, r.address, r.words),
            (table, address, words),
            "{name}"
        );
    }
}

#[test]
fn heidelberg_decodes_recorded_words() {
    let map = heidelberg();
    let mut image = RegisterImage::default();
    // IR 5..18 as one block: state 7 (C2), 16.0/15.9/16.1 A, 31.5 °C, 230/231/229 V, lock 1,
    // 11040 W, energy since power-on 1234 Wh, lifetime 100000 Wh (0x0001_86A0).
    image.insert_block(
        Table::Input,
        5,
        &[
            7, 160, 159, 161, 315, 230, 231, 229, 1, 11040, 0, 1234, 0x0001, 0x86A0,
        ],
    );
    assert_eq!(image.iec_state(&map), Some(Ok(Iec61851State::C2)));
    assert_eq!(image.number(&map, id(&map, "energy")), Some(100_000.0));
    assert_eq!(image.number(&map, id(&map, "power")), Some(11040.0));
    let l1 = image.number(&map, id(&map, "current_l1")).unwrap();
    assert!((l1 - 16.0).abs() < 1e-9, "{l1}");
    let t = image.number(&map, id(&map, "temperature")).unwrap();
    assert!((t - 31.5).abs() < 1e-9, "{t}");

    // A negative PCB temperature (i16): -5.0 °C.
    image.insert_block(Table::Input, 9, &[0xFFCE]);
    let t = image.number(&map, id(&map, "temperature")).unwrap();
    assert!((t + 5.0).abs() < 1e-9, "{t}");

    // State 1 ("undefined") is not mapped: Faulted with the raw value as vendor error code.
    image.insert_block(Table::Input, 5, &[1]);
    assert_eq!(image.iec_state(&map), Some(Err("1".to_owned())));
    for (raw, state) in [
        (2, "A"),
        (3, "A"),
        (4, "B1"),
        (5, "B2"),
        (6, "C1"),
        (8, "C2"),
        (9, "E"),
        (10, "F"),
        (11, "F"),
    ] {
        image.insert_block(Table::Input, 5, &[raw]);
        assert_eq!(
            image.iec_state(&map).map(|s| s.map(Iec61851State::as_str)),
            Some(Ok(state)),
            "raw {raw}"
        );
    }
}

#[test]
fn heidelberg_limit_is_written_in_tenths_of_an_ampere() {
    let map = heidelberg();
    let limit = map.control.current_limit.as_ref().expect("current limit");
    assert_eq!((limit.min, limit.max, limit.off_value), (6.0, 16.0, 0.0));
    let reg = map.register(limit.register);
    assert_eq!(reg.address, 261);
    assert_eq!(codec::encode(reg, &Value::Number(16.0)).unwrap(), vec![160]);
    assert_eq!(codec::encode(reg, &Value::Number(6.0)).unwrap(), vec![60]);
    let failsafe = map.register(map.control.failsafe_current.expect("failsafe"));
    assert_eq!(failsafe.address, 262);
    assert_eq!(
        codec::encode(failsafe, &Value::Number(6.0)).unwrap(),
        vec![60]
    );
}

#[test]
fn heidelberg_keeps_modbus_awake_and_feeds_the_watchdog() {
    let map = heidelberg();
    assert_eq!(map.init.len(), 1);
    assert_eq!(map.register(map.init[0].register).address, 258);
    assert_eq!(map.init[0].value, 4.0);
    let ka = map.keepalive.as_ref().expect("keepalive");
    match &ka.interval {
        KeepaliveInterval::FromRegister {
            register,
            unit,
            divide,
        } => {
            assert_eq!(map.register(*register).address, 257);
            assert_eq!((*unit, *divide), (TimeUnit::Ms, 4));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(ka.action, KeepaliveAction::Read(r) if map.register(r).address == 5));
}

#[test]
fn heidelberg_needs_one_request_per_cycle() {
    let map = heidelberg();
    // Everything polled every cycle sits in IR 5..18 (13, 15-16 are declared too, so the block
    // has no undeclared registers at all): one request per cycle.
    assert_eq!(
        plan(&map, &[PollClass::Always]),
        vec![ReadBlock {
            table: Table::Input,
            start: 5,
            count: 14
        }]
    );
    // Every 10th cycle the limit is read back as well (it reverts at power-on).
    assert_eq!(
        plan(&map, &[PollClass::Always, PollClass::Slow]),
        vec![
            ReadBlock {
                table: Table::Input,
                start: 5,
                count: 14
            },
            ReadBlock {
                table: Table::Holding,
                start: 261,
                count: 1
            },
        ]
    );
    // After connect: IR 4..18, IR 100..101 (81 undeclared between them), HR 257..262 (259 and
    // 260 undeclared: 2 <= max_gap 8).
    assert_eq!(
        plan(&map, &[PollClass::Always, PollClass::Slow, PollClass::Once]),
        vec![
            ReadBlock {
                table: Table::Input,
                start: 4,
                count: 15
            },
            ReadBlock {
                table: Table::Input,
                start: 100,
                count: 2
            },
            ReadBlock {
                table: Table::Holding,
                start: 257,
                count: 6
            },
        ]
    );
}

#[test]
fn describe_shows_what_an_installer_checks() {
    let text = describe(&heidelberg());
    for needle in [
        "Heidelberg Energy Control",
        "19200 baud 8E1",
        "100ms",
        "energy",
        "17..18",
        "holding",
        "7 -> C2",
        "Energy.Active.Import.Register",
        "L1: current_l1",
        "6 A .. 16 A",
        "write 4 to `standby`",
        "every cycle: 1 request(s): input 5..18",
        "every 10th cycle: 2 request(s): input 5..18, holding 261\n",
        "100ms before each request",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn heidelberg_keepalive_period_is_a_quarter_of_the_watchdog() {
    let map = heidelberg();
    let interval = &map.keepalive.as_ref().expect("keepalive").interval;
    let mut image = RegisterImage::default();
    image.insert_block(Table::Holding, 257, &[15000]);
    let watchdog = image.number(&map, id(&map, "watchdog"));
    assert_eq!(interval.period(watchdog), Some(Duration::from_millis(3750)));
    // Watchdog off (0) or not read yet: no keep-alive needed / known.
    assert_eq!(interval.period(Some(0.0)), None);
    assert_eq!(interval.period(None), None);
}

/// The YAML blocks of `device-maps/README.md` that start with `vendor:` or `registers:`.
fn readme_blocks() -> Vec<String> {
    let readme = include_str!("../device-maps/README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_readme_examples_load() {
    let blocks = readme_blocks();
    let complete: Vec<&String> = blocks.iter().filter(|b| b.starts_with("vendor:")).collect();
    assert_eq!(complete.len(), 1);
    let map = chargebridge::devicemap::load_str("example", "README.md", complete[0])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!plan(&map, &[PollClass::Always]).is_empty());

    let registers: Vec<&String> = blocks
        .iter()
        .filter(|b| b.starts_with("registers:"))
        .collect();
    assert_eq!(
        registers.len(),
        3,
        "the register reference and the status examples"
    );
    for block in registers {
        // Blocks without their own `status:` get a minimal one.
        let status = if block.contains("\nstatus:") {
            ""
        } else {
            "status: { register: state, map: { 2: A } }\n"
        };
        let yaml = format!("vendor: V\nmodel: M\n{block}{status}");
        chargebridge::devicemap::load_str("registers", "README.md", &yaml)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    }
}
