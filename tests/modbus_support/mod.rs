//! A minimal Modbus server for the bus tests (not the wallbox simulator): registers that read
//! back as `unit * 1000 + address` until written, a log of every request it received, units
//! that never answer, and replies that can be delayed.

#![allow(dead_code)] // each test file uses a different part

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chargebridge::devicemap::SerialSettings;
use chargebridge::modbus::{BusHandle, DeviceTiming, Endpoint, PtyPair, spawn_bus};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

/// First address that answers "illegal data address".
pub const FIRST_BAD_ADDRESS: u16 = 60_000;

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub unit: u8,
    pub function: u8,
    pub address: u16,
    /// Written values (coils as 0/1); empty for reads.
    pub values: Vec<u16>,
}

#[derive(Debug, Default)]
struct State {
    holding: HashMap<(u8, u16), u16>,
    coils: HashMap<(u8, u16), bool>,
    silent: HashSet<u8>,
    /// Delays for the next requests, one per request.
    delays: VecDeque<Duration>,
    seen: Vec<Seen>,
    connections: usize,
}

/// The server's registers and behaviour, shared with the test.
#[derive(Clone, Debug, Default)]
pub struct TestDevice {
    state: Arc<Mutex<State>>,
}

impl TestDevice {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Never answer requests for `unit` (like an RS-485 slave that is off or misaddressed).
    pub fn make_silent(&self, unit: u8) {
        self.lock().silent.insert(unit);
    }

    /// Delay the reply to the next request by `delay`.
    pub fn delay_next(&self, delay: Duration) {
        self.lock().delays.push_back(delay);
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// The value a register reads back as.
    pub fn holding(&self, unit: u8, address: u16) -> u16 {
        let state = self.lock();
        value(&state, unit, address)
    }

    fn answer(
        &self,
        req: SlaveRequest<'static>,
    ) -> (Option<Duration>, Result<Option<Response>, ExceptionCode>) {
        let mut state = self.lock();
        let unit = req.slave;
        let function = req.request.function_code().value();
        let (address, values) = match &req.request {
            Request::ReadCoils(a, _)
            | Request::ReadDiscreteInputs(a, _)
            | Request::ReadHoldingRegisters(a, _)
            | Request::ReadInputRegisters(a, _) => (*a, Vec::new()),
            Request::WriteSingleCoil(a, on) => (*a, vec![u16::from(*on)]),
            Request::WriteSingleRegister(a, w) => (*a, vec![*w]),
            Request::WriteMultipleCoils(a, bits) => {
                (*a, bits.iter().map(|b| u16::from(*b)).collect())
            }
            Request::WriteMultipleRegisters(a, words) => (*a, words.to_vec()),
            _ => (0, Vec::new()),
        };
        state.seen.push(Seen {
            unit,
            function,
            address,
            values: values.clone(),
        });
        let delay = state.delays.pop_front();
        if state.silent.contains(&unit) {
            return (delay, Ok(None));
        }
        let result = respond(&mut state, unit, &req.request, address, &values);
        (delay, result.map(Some))
    }
}

fn value(state: &State, unit: u8, address: u16) -> u16 {
    state
        .holding
        .get(&(unit, address))
        .copied()
        .unwrap_or_else(|| u16::from(unit) * 1000 + address)
}

fn respond(
    state: &mut State,
    unit: u8,
    request: &Request<'_>,
    address: u16,
    values: &[u16],
) -> Result<Response, ExceptionCode> {
    let count = match request {
        Request::ReadCoils(_, n)
        | Request::ReadDiscreteInputs(_, n)
        | Request::ReadHoldingRegisters(_, n)
        | Request::ReadInputRegisters(_, n) => *n,
        _ => u16::try_from(values.len()).unwrap_or(u16::MAX),
    };
    if u32::from(address) + u32::from(count) > u32::from(FIRST_BAD_ADDRESS) {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    let words = |state: &State| {
        (address..address + count)
            .map(|a| value(state, unit, a))
            .collect()
    };
    let bits = |state: &State| {
        (address..address + count)
            .map(|a| state.coils.get(&(unit, a)).copied().unwrap_or(a % 2 == 1))
            .collect()
    };
    Ok(match request {
        Request::ReadHoldingRegisters(..) => Response::ReadHoldingRegisters(words(state)),
        // input registers read back as 10000 more than holding ones, to tell the tables apart
        Request::ReadInputRegisters(..) => Response::ReadInputRegisters(
            words(state)
                .into_iter()
                .map(|w: u16| w.wrapping_add(10_000))
                .collect(),
        ),
        Request::ReadCoils(..) => Response::ReadCoils(bits(state)),
        Request::ReadDiscreteInputs(..) => {
            Response::ReadDiscreteInputs(bits(state).into_iter().map(|b: bool| !b).collect())
        }
        Request::WriteSingleRegister(a, w) => {
            state.holding.insert((unit, *a), *w);
            Response::WriteSingleRegister(*a, *w)
        }
        Request::WriteMultipleRegisters(a, words) => {
            for (i, w) in words.iter().enumerate() {
                state.holding.insert((unit, a + i as u16), *w);
            }
            Response::WriteMultipleRegisters(*a, count)
        }
        Request::WriteSingleCoil(a, on) => {
            state.coils.insert((unit, *a), *on);
            Response::WriteSingleCoil(*a, *on)
        }
        Request::WriteMultipleCoils(a, bits) => {
            for (i, b) in bits.iter().enumerate() {
                state.coils.insert((unit, a + i as u16), *b);
            }
            Response::WriteMultipleCoils(*a, count)
        }
        _ => return Err(ExceptionCode::IllegalFunction),
    })
}

type Reply = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for TestDevice {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Reply;

    fn call(&self, req: Self::Request) -> Self::Future {
        let (delay, result) = self.answer(req);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            result
        })
    }
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct Running {
    task: JoinHandle<()>,
}

impl Running {
    /// Stop the server and wait until its socket and connections are closed.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `device` over Modbus TCP on `listener`.
pub fn serve_tcp(device: &TestDevice, listener: TcpListener) -> Running {
    let device = device.clone();
    let task = tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = |stream: TcpStream, _peer: SocketAddr| {
            let device = device.clone();
            device.lock().connections += 1;
            async move { io::Result::Ok(Some((device, stream))) }
        };
        let _ = server.serve(&on_connected, |_err| {}).await;
    });
    Running { task }
}

/// Serve `device` over Modbus TCP on a fresh loopback port.
pub async fn start_tcp(device: &TestDevice) -> io::Result<(String, Running)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    Ok((addr, serve_tcp(device, listener)))
}

/// Serve `device` over Modbus RTU on the serial device `path`, opened 8N1 (Linux ptys ignore
/// the line settings, so the other end may use any).
pub fn start_rtu(device: &TestDevice, path: &str) -> io::Result<Running> {
    let port = tokio_serial::SerialStream::open(&tokio_serial::new(path, 19_200))?;
    let server = tokio_modbus::server::rtu::Server::new(port);
    let device = device.clone();
    let task = tokio::spawn(async move {
        let _ = server.serve_forever(device).await;
    });
    Ok(Running { task })
}

/// Timing with no request delay.
pub fn timing(timeout_ms: u64, retries: u32) -> DeviceTiming {
    DeviceTiming {
        request_delay: Duration::ZERO,
        timeout: Duration::from_millis(timeout_ms),
        retries,
    }
}

/// A bus task under test, cancelled when the guard drops so no task outlives the test. It
/// derefs to its handle.
pub struct Bus {
    pub handle: BusHandle,
    pub shutdown: CancellationToken,
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl std::ops::Deref for Bus {
    type Target = BusHandle;

    fn deref(&self) -> &BusHandle {
        &self.handle
    }
}

/// A bus named `tcp-test` on the Modbus TCP endpoint `addr`.
pub fn tcp_bus(addr: &str) -> Bus {
    spawn("tcp-test", Endpoint::Tcp { addr: addr.into() })
}

/// A bus named `rs485-test` on the serial device `path`.
pub fn rtu_bus(path: &str, settings: SerialSettings) -> Bus {
    let endpoint = Endpoint::Serial {
        path: path.into(),
        settings,
    };
    spawn("rs485-test", endpoint)
}

fn spawn(name: &str, endpoint: Endpoint) -> Bus {
    let shutdown = CancellationToken::new();
    let handle = spawn_bus(name.into(), endpoint, shutdown.clone());
    Bus { handle, shutdown }
}

/// A fresh device served over Modbus TCP on loopback, and a bus connected to it (the server
/// runs until the [`Running`] is dropped).
pub async fn tcp_rig() -> io::Result<(TestDevice, Running, Bus)> {
    let device = TestDevice::default();
    let (addr, server) = start_tcp(&device).await?;
    let bus = tcp_bus(&addr);
    Ok((device, server, bus))
}

/// The serial line of [`rtu_rig`]: the server on one end of a pty pair; both go when dropped.
pub struct RtuLine {
    // Fields drop in order: the server closes its end before the pair goes.
    _server: Running,
    _pty: PtyPair,
}

/// A fresh device served over Modbus RTU on one end of a pty pair, and a bus on the other end
/// opened with `settings`.
pub fn rtu_rig(settings: SerialSettings) -> io::Result<(TestDevice, RtuLine, Bus)> {
    let pty = PtyPair::open()?;
    let device = TestDevice::default();
    let server = start_rtu(&device, &pty.b)?;
    let bus = rtu_bus(&pty.a, settings);
    let line = RtuLine {
        _server: server,
        _pty: pty,
    };
    Ok((device, line, bus))
}
