//! A small SMTP server for tests: it listens on 127.0.0.1, accepts every message and keeps it in
//! memory, so the email tests need no mail server installed. It speaks plain SMTP (RFC 5321:
//! EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; 502 for anything else), which is all the
//! worker's lettre transport uses for `SMTP_URL=smtp://127.0.0.1:port`: no TLS, no AUTH.
//!
//! Each connection is served by a blocking thread, so the sink works the same under any test
//! runtime (or none); waiting for a message is async so that an in-process worker on the test's
//! runtime keeps running meanwhile.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The reverse path of `MAIL FROM` without its angle brackets (empty for the null sender).
    pub mail_from: String,
    /// The forward path of each `RCPT TO`, in order, without angle brackets.
    pub rcpt_to: Vec<String>,
    /// The message after dot-unstuffing, every line with its line ending, without the final
    /// `.` line.
    pub data: Vec<u8>,
}

impl Received {
    /// The message as text (bytes that are not UTF-8 become U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// A running SMTP sink. Dropping it (or [`SmtpSink::stop`]) closes the listener and every
/// connection, and waits for their threads.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the acceptor, the connection threads and the test share.
struct Shared {
    /// Every message received so far, in order; a watch channel so tests can await the next one.
    messages: watch::Sender<Vec<Received>>,
    /// While set, new connections are greeted with 421 and closed.
    refusing: AtomicBool,
    stopping: AtomicBool,
    connections: Mutex<Vec<Connection>>,
}

/// An open connection: a handle to shut its socket down, and the thread serving it.
struct Connection {
    stream: TcpStream,
    thread: JoinHandle<()>,
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A panicking connection thread cannot leave the list half-changed: keep using it.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shuts every open connection down (their threads then end on their own).
    fn close_connections(&self) {
        for connection in self.connections().iter() {
            let _ = connection.stream.shutdown(Shutdown::Both);
        }
    }
}

impl SmtpSink {
    /// Starts a sink on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no port can be bound or no thread started.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink to 127.0.0.1");
        let addr = listener.local_addr().expect("the SMTP sink's address");
        let shared = Arc::new(Shared {
            messages: watch::Sender::new(Vec::new()),
            refusing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("smtp-sink".into())
                .spawn(move || accept(&listener, &shared))
                .expect("start the SMTP sink's thread")
        };
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL lettre (and the worker's `SMTP_URL`) takes: `smtp://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message received so far, in the order they arrived.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.messages.borrow().clone()
    }

    /// The first message (already received or still to come) that `matches`, or `None` if none
    /// has arrived within `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        matches: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        let mut messages = self.shared.messages.subscribe();
        let found = async {
            let all = messages
                .wait_for(|all| all.iter().any(&matches))
                .await
                .ok()?;
            all.iter().find(|m| matches(m)).cloned()
        };
        tokio::time::timeout(timeout, found).await.ok().flatten()
    }

    /// While `refusing`, the sink behaves like a server that is going down: it closes the
    /// connections it has and greets every new one with `421` and closes it, so a client sees
    /// a temporary failure. `false` accepts mail again.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
        if refusing {
            self.shared.close_connections();
        }
    }

    /// Stops listening, closes every connection and waits for the threads.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor out of `accept`; it sees `stopping` and returns, closing the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.shared.close_connections();
        let connections = std::mem::take(&mut *self.shared.connections());
        for connection in connections {
            let _ = connection.thread.join();
        }
    }
}

/// Accepts connections until the sink stops, one serving thread each.
fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let serving = Arc::clone(shared);
        let thread = std::thread::Builder::new()
            .name("smtp-sink-conn".into())
            .spawn(move || {
                // A client that goes away mid-session is no error of the sink's.
                let _ = serve(stream, &serving);
            });
        let Ok(thread) = thread else { continue };
        let mut connections = shared.connections();
        connections.retain(|c| !c.thread.is_finished());
        connections.push(Connection {
            stream: handle,
            thread,
        });
    }
}

/// The mail transaction in progress (RFC 5321 §3.3).
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

/// One SMTP session on `stream`, until QUIT or the client (or [`SmtpSink`]) closes it.
fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    if shared.refusing.load(Ordering::SeqCst) {
        reply(
            &mut out,
            "421 4.3.2 Service not available, closing transmission channel",
        )?;
        return out.shutdown(Shutdown::Both);
    }
    reply(&mut out, "220 127.0.0.1 ESMTP tenantry-testkit sink")?;
    let mut greeted = false;
    let mut tx = Transaction::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        let arg = arg.trim();
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if arg.is_empty() => reply(&mut out, "501 5.5.4 Say who you are")?,
            "EHLO" => {
                greeted = true;
                tx = Transaction::default();
                // 8BITMIME and SMTPUTF8 so that lettre also sends non-ASCII messages.
                reply(&mut out, "250-127.0.0.1\r\n250-8BITMIME\r\n250 SMTPUTF8")?;
            }
            "HELO" => {
                greeted = true;
                tx = Transaction::default();
                reply(&mut out, "250 127.0.0.1")?;
            }
            "MAIL" if !greeted => reply(&mut out, "503 5.5.1 EHLO first")?,
            "MAIL" if tx.mail_from.is_some() => {
                reply(&mut out, "503 5.5.1 A transaction is in progress")?;
            }
            "MAIL" => match path(arg, "FROM:") {
                Some(from) => {
                    tx.mail_from = Some(from);
                    reply(&mut out, "250 2.1.0 OK")?;
                }
                None => reply(&mut out, "501 5.5.4 Syntax: MAIL FROM:<address>")?,
            },
            "RCPT" if tx.mail_from.is_none() => reply(&mut out, "503 5.5.1 MAIL first")?,
            "RCPT" => match path(arg, "TO:").filter(|to| !to.is_empty()) {
                Some(to) => {
                    tx.rcpt_to.push(to);
                    reply(&mut out, "250 2.1.5 OK")?;
                }
                None => reply(&mut out, "501 5.5.4 Syntax: RCPT TO:<address>")?,
            },
            "DATA" if !arg.is_empty() => reply(&mut out, "501 5.5.4 DATA takes no argument")?,
            "DATA" if tx.rcpt_to.is_empty() => reply(&mut out, "503 5.5.1 RCPT first")?,
            "DATA" => {
                reply(&mut out, "354 End data with <CR><LF>.<CR><LF>")?;
                let Some(data) = read_data(&mut reader)? else {
                    return Ok(()); // the client went away mid-message: nothing was received
                };
                let tx = std::mem::take(&mut tx);
                let received = Received {
                    mail_from: tx.mail_from.unwrap_or_default(),
                    rcpt_to: tx.rcpt_to,
                    data,
                };
                // Stored before the 250, so a client that has its 250 finds the message here.
                shared.messages.send_modify(|all| all.push(received));
                reply(&mut out, "250 2.0.0 OK: queued")?;
            }
            "RSET" => {
                tx = Transaction::default();
                reply(&mut out, "250 2.0.0 OK")?;
            }
            "NOOP" => reply(&mut out, "250 2.0.0 OK")?,
            "QUIT" => {
                reply(&mut out, "221 2.0.0 Bye")?;
                return Ok(());
            }
            _ => reply(&mut out, "502 5.5.2 Command not implemented")?,
        }
    }
}

/// Writes one reply (which may be several `\r\n`-separated lines) and its final line ending,
/// in one write: with Nagle's algorithm a second small write would wait for the client's
/// delayed ACK.
fn reply(out: &mut TcpStream, text: &str) -> io::Result<()> {
    out.write_all(format!("{text}\r\n").as_bytes())
}

/// The address in `FROM:<address> [parameters]` (or `TO:…`), `prefix` matched without regard
/// to case; parameters such as `BODY=8BITMIME` are ignored. `None` if it is not of that form.
fn path(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

/// The lines after `354` up to the line holding only `.`, with the leading dot of every other
/// line that starts with one removed (RFC 5321 §4.5.2). `None` if the connection ends first.
fn read_data(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(Some(data));
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::{ContentTransferEncoding, ContentType};
    use lettre::message::Body;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    /// A client speaking raw SMTP: each call sends lines and returns the reply's status code.
    struct Client {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Client {
        fn connect(sink: &SmtpSink) -> (Self, String) {
            let stream = TcpStream::connect(sink.addr()).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut client = Self {
                reader: BufReader::new(stream.try_clone().expect("clone")),
                writer: stream,
            };
            let greeting = client.read_reply();
            (client, greeting)
        }

        /// The whole reply (all its lines) as text.
        fn read_reply(&mut self) -> String {
            let mut reply = String::new();
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).expect("read a reply");
                assert!(!line.is_empty(), "the server closed the connection");
                reply.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return reply;
                }
            }
        }

        fn send(&mut self, text: &str) -> u16 {
            self.writer.write_all(text.as_bytes()).expect("write");
            let reply = self.read_reply();
            reply[..3].parse().expect("a status code")
        }
    }

    #[test]
    fn stores_the_envelope_and_the_unstuffed_data() {
        let sink = SmtpSink::start();
        let (mut c, greeting) = Client::connect(&sink);
        assert!(greeting.starts_with("220 "), "{greeting}");
        assert_eq!(c.send("EHLO client.test\r\n"), 250);
        assert_eq!(
            c.send("MAIL FROM:<from@example.test> BODY=8BITMIME\r\n"),
            250
        );
        assert_eq!(c.send("RCPT TO:<a@example.test>\r\n"), 250);
        assert_eq!(c.send("rcpt to: <b@example.test>\r\n"), 250);
        assert_eq!(c.send("DATA\r\n"), 354);
        let body = "Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n.\r\n";
        assert_eq!(c.send(body), 250);
        assert_eq!(c.send("QUIT\r\n"), 221);

        assert_eq!(
            sink.messages(),
            [Received {
                mail_from: "from@example.test".into(),
                rcpt_to: vec!["a@example.test".into(), "b@example.test".into()],
                data: b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n".to_vec(),
            }]
        );
    }

    #[test]
    fn keeps_the_order_of_the_protocol_and_refuses_what_it_does_not_speak() {
        let sink = SmtpSink::start();
        let (mut c, _) = Client::connect(&sink);
        assert_eq!(c.send("MAIL FROM:<a@example.test>\r\n"), 503, "before EHLO");
        assert_eq!(c.send("EHLO\r\n"), 501, "EHLO without a name");
        assert_eq!(c.send("HELO client.test\r\n"), 250);
        assert_eq!(c.send("STARTTLS\r\n"), 502);
        assert_eq!(c.send("AUTH PLAIN AGFiYwBzZWNyZXQ=\r\n"), 502);
        assert_eq!(c.send("RCPT TO:<a@example.test>\r\n"), 503, "before MAIL");
        assert_eq!(c.send("DATA\r\n"), 503, "before RCPT");
        assert_eq!(
            c.send("MAIL FROM:a@example.test\r\n"),
            501,
            "no angle brackets"
        );
        assert_eq!(c.send("MAIL FROM:<>\r\n"), 250, "the null sender");
        assert_eq!(c.send("MAIL FROM:<b@example.test>\r\n"), 503, "nested MAIL");
        assert_eq!(c.send("RCPT TO:<>\r\n"), 501);
        assert_eq!(c.send("RCPT TO:<dropped@example.test>\r\n"), 250);
        assert_eq!(c.send("NOOP\r\n"), 250);
        assert_eq!(c.send("RSET\r\n"), 250);
        assert_eq!(c.send("DATA\r\n"), 503, "RSET ended the transaction");
        assert_eq!(c.send("MAIL FROM:<c@example.test>\r\n"), 250);
        assert_eq!(c.send("RCPT TO:<kept@example.test>\r\n"), 250);
        assert_eq!(c.send("DATA\r\n"), 354);
        assert_eq!(c.send("one line\r\n.\r\n"), 250);
        assert_eq!(c.send("QUIT\r\n"), 221);

        let messages = sink.messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0].mail_from, "c@example.test");
        assert_eq!(messages[0].rcpt_to, ["kept@example.test"]);
        assert_eq!(messages[0].text(), "one line\r\n");
    }

    /// A plain-text message sent as 8-bit (so non-ASCII text needs the sink's 8BITMIME and dots
    /// at the start of a line reach the wire as they are, then stuffed).
    fn message(to: &str, body: &str) -> Message {
        let body = Body::new_with_encoding(body.to_owned(), ContentTransferEncoding::EightBit)
            .expect("an 8-bit body");
        Message::builder()
            .from("Tenantry <no-reply@example.test>".parse().expect("from"))
            .to(to.parse().expect("to"))
            .subject("Hello")
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .expect("a message")
    }

    /// The client the worker uses, with its connection pool: two messages, the second one over
    /// the pooled connection (which lettre checks with NOOP first).
    #[tokio::test]
    async fn lettre_delivers_to_it() {
        let sink = SmtpSink::start();
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .expect("url")
            .build();
        let body = "Hi,\n.a line starting with a dot\nbye, ünïcode\n";
        smtp.send(message("ann@example.test", body))
            .await
            .expect("first send");
        smtp.send(message("bob@example.test", "second\n"))
            .await
            .expect("second send");

        let first = sink
            .wait_for(Duration::from_secs(5), |m| {
                m.rcpt_to == ["ann@example.test"]
            })
            .await
            .expect("the first message");
        assert_eq!(first.mail_from, "no-reply@example.test");
        let text = first.text();
        assert!(text.contains("To: ann@example.test\r\n"), "{text}");
        assert!(
            text.contains("\r\n.a line starting with a dot\r\n"),
            "{text}"
        );
        assert!(text.contains("bye, ünïcode"), "{text}");
        assert_eq!(sink.messages().len(), 2);
    }

    #[tokio::test]
    async fn while_refusing_a_send_fails_with_421_and_succeeds_afterwards() {
        let sink = SmtpSink::start();
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .expect("url")
            .build();
        smtp.send(message("ann@example.test", "before\n"))
            .await
            .expect("a send before the outage");

        sink.set_refusing(true);
        let err = smtp
            .send(message("ann@example.test", "during\n"))
            .await
            .expect_err("no delivery while refusing");
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("421"), "{err}");

        sink.set_refusing(false);
        smtp.send(message("ann@example.test", "after\n"))
            .await
            .expect("a send after the outage");
        let texts: Vec<String> = sink.messages().iter().map(Received::text).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].contains("before") && texts[1].contains("after"));
    }

    #[tokio::test]
    async fn wait_for_gives_up_after_its_timeout() {
        let sink = SmtpSink::start();
        let found = sink.wait_for(Duration::from_millis(50), |_| true).await;
        assert_eq!(found, None);
    }

    #[test]
    fn stopping_closes_the_port() {
        let sink = SmtpSink::start();
        let addr = sink.addr();
        let (mut open, _) = Client::connect(&sink);
        sink.stop();
        assert!(TcpStream::connect(addr).is_err(), "still listening");
        let mut rest = String::new();
        let read = open.reader.read_line(&mut rest);
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "open connection not closed"
        );
    }

    #[test]
    fn parses_paths() {
        assert_eq!(path("FROM:<a@b>", "FROM:"), Some("a@b".into()));
        assert_eq!(path("from: <a@b> SIZE=10", "FROM:"), Some("a@b".into()));
        assert_eq!(path("FROM:<>", "FROM:"), Some(String::new()));
        assert_eq!(path("TO:<a@b>", "FROM:"), None);
        assert_eq!(path("FROM:a@b", "FROM:"), None);
        assert_eq!(path("FR", "FROM:"), None);
    }
}
