//! The optional status LED. Patterns: fast blink while registering, a short blip every
//! few seconds when idle, a steady 1 Hz blink while working, a double blink on error.
//!
//! `rppal` drives the pin on Linux; off a Pi (or with no GPIO access) the agent says so
//! once and runs without an LED. Nothing here runs unless `led_pin` is configured.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::watchdog::Stop;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LedState {
    Registering = 0,
    Idle = 1,
    Working = 2,
    Error = 3,
}

impl LedState {
    fn from_u8(v: u8) -> LedState {
        match v {
            0 => LedState::Registering,
            1 => LedState::Idle,
            2 => LedState::Working,
            _ => LedState::Error,
        }
    }

    /// (on, duration) steps, repeated.
    pub fn pattern(self) -> &'static [(bool, u64)] {
        match self {
            LedState::Registering => &[(true, 100), (false, 100)],
            LedState::Idle => &[(true, 60), (false, 2940)],
            LedState::Working => &[(true, 500), (false, 500)],
            LedState::Error => &[(true, 100), (false, 150), (true, 100), (false, 650)],
        }
    }
}

/// What the agent is doing, shared with the LED thread.
#[derive(Clone)]
pub struct Status(Arc<AtomicU8>);

impl Default for Status {
    fn default() -> Status {
        Status(Arc::new(AtomicU8::new(LedState::Registering as u8)))
    }
}

impl Status {
    pub fn set(&self, s: LedState) {
        self.0.store(s as u8, Ordering::Relaxed);
    }
    pub fn get(&self) -> LedState {
        LedState::from_u8(self.0.load(Ordering::Relaxed))
    }
}

/// One output pin.
pub trait Led: Send {
    fn set(&mut self, on: bool);
}

#[cfg(target_os = "linux")]
struct RppalLed(rppal::gpio::OutputPin);

#[cfg(target_os = "linux")]
impl Led for RppalLed {
    fn set(&mut self, on: bool) {
        if on {
            self.0.set_high()
        } else {
            self.0.set_low()
        }
    }
}

/// Opens the pin, or says why not.
pub fn open(pin: u8) -> Result<Box<dyn Led>, String> {
    #[cfg(target_os = "linux")]
    {
        let gpio = rppal::gpio::Gpio::new().map_err(|e| e.to_string())?;
        let p = gpio.get(pin).map_err(|e| e.to_string())?;
        Ok(Box::new(RppalLed(p.into_output())))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pin;
        Err("GPIO is only supported on Linux".to_string())
    }
}

/// Starts the LED thread when a pin is configured and usable.
pub fn start(pin: Option<u8>, status: Status, stop: Stop) -> Option<JoinHandle<()>> {
    let pin = pin?;
    let led = match open(pin) {
        Ok(l) => l,
        Err(e) => {
            log::info!("GPIO unavailable ({e}); running without the status LED on pin {pin}");
            return None;
        }
    };
    log::info!("status LED on GPIO {pin}");
    Some(std::thread::spawn(move || drive(led, status, stop)))
}

fn drive(mut led: Box<dyn Led>, status: Status, stop: Stop) {
    'outer: loop {
        let state = status.get();
        for &(on, ms) in state.pattern() {
            led.set(on);
            if stop.wait(Duration::from_millis(ms)) {
                break 'outer;
            }
            if status.get() != state {
                continue 'outer;
            }
        }
    }
    led.set(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct FakeLed(Arc<Mutex<Vec<bool>>>);
    impl Led for FakeLed {
        fn set(&mut self, on: bool) {
            self.0.lock().unwrap().push(on);
        }
    }

    #[test]
    fn led_follows_state_and_ends_dark() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let status = Status::default();
        let stop = Stop::new();
        let (s2, st2, l2) = (status.clone(), stop.clone(), log.clone());
        let t = std::thread::spawn(move || drive(Box::new(FakeLed(l2)), s2, st2));
        std::thread::sleep(Duration::from_millis(350));
        status.set(LedState::Idle);
        std::thread::sleep(Duration::from_millis(50));
        stop.request();
        t.join().unwrap();
        let log = log.lock().unwrap();
        assert!(log.len() >= 3, "registering blinks fast: {log:?}");
        assert_eq!(log.last(), Some(&false));
    }

    #[test]
    fn no_pin_no_thread() {
        assert!(start(None, Status::default(), Stop::new()).is_none());
    }
}
