//! Container log files in the kubelet's CRI format, written by the agent from the container's
//! stdout and stderr: one line per chunk of output, `TIMESTAMP STREAM TAG CONTENT`, where the
//! timestamp is RFC 3339 with nanoseconds, the stream `stdout` or `stderr`, and the tag `F` for
//! a full line or `P` for part of one (a line still being written, or one longer than a
//! chunk). Files are size-capped and rotated (`N.log`, `N.log.1`, ... oldest last), and read
//! back here for `kubectl logs`, with or without the timestamps.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How big one log file may grow, and how many files (the current one included) are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    pub max_bytes: u64,
    pub max_files: u32,
}

impl Default for LogLimits {
    /// The kubelet's defaults: `containerLogMaxSize: 10Mi`, `containerLogMaxFiles: 5`.
    fn default() -> Self {
        LogLimits {
            max_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// Which output of the container a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// `2016-10-06T00:17:09.669794202Z`: RFC 3339 with nine fraction digits, as the CRI log format
/// writes each line's time.
pub fn rfc3339_nano(t: SystemTime) -> String {
    minik_api::time::rfc3339_nano(minik_api::time::from_system(t))
}

/// The path of rotated file `n` of `path` (`n` = 0 is the current file).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_owned();
    }
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Appends output to a container's log, rotating it when it is full.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    limits: LogLimits,
    /// Chunks of one line longer than this are written as several `P` entries.
    max_line: usize,
}

impl LogWriter {
    /// Opens (creating, appending) the current log file at `path`.
    pub fn open(path: &Path, limits: LogLimits) -> io::Result<LogWriter> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            limits,
            max_line: 16 * 1024,
        })
    }

    /// Writes one chunk of output: each complete line as an `F` entry, a trailing fragment as a
    /// `P` entry (the rest of its line follows in a later entry).
    pub fn write(&mut self, stream: Stream, chunk: &[u8], now: SystemTime) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let stamp = rfc3339_nano(now);
        let mut out = Vec::with_capacity(chunk.len() + 48);
        let mut rest = chunk;
        while !rest.is_empty() {
            let (piece, full, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) if i <= self.max_line => (&rest[..i], true, &rest[i + 1..]),
                _ => {
                    let n = rest.len().min(self.max_line);
                    (&rest[..n], false, &rest[n..])
                }
            };
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.name().as_bytes());
            out.extend_from_slice(if full { b" F " } else { b" P " });
            out.extend_from_slice(piece);
            out.push(b'\n');
            rest = next;
        }
        if self.size > 0 && self.size + out.len() as u64 > self.limits.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&out)?;
        self.size += out.len() as u64;
        Ok(())
    }

    /// `N.log` becomes `N.log.1`, `N.log.1` becomes `N.log.2`, ...; the oldest beyond
    /// `max_files` is deleted; a new, empty `N.log` is opened.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.limits.max_files.max(2);
        let _ = std::fs::remove_file(rotated(&self.path, keep - 1));
        for n in (1..keep - 1).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One entry of a log file.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub timestamp: &'a [u8],
    pub stream: &'a [u8],
    /// Part of a line: the rest follows in the next entry of the same stream.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line of a log file (without its newline). A line that is not in the CRI format
/// (a file written by something else) is taken whole as a full stdout line without timestamp.
pub fn parse(line: &[u8]) -> Entry<'_> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let (Some(timestamp), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
    else {
        return raw(line);
    };
    if !matches!(stream, b"stdout" | b"stderr") || !matches!(tag, b"F" | b"P") {
        return raw(line);
    }
    Entry {
        timestamp,
        stream,
        partial: tag == b"P",
        content: fields.next().unwrap_or_default(),
    }
}

fn raw(line: &[u8]) -> Entry<'_> {
    Entry {
        timestamp: b"",
        stream: b"stdout",
        partial: false,
        content: line,
    }
}

/// Turns log entries back into the container's output, with the timestamp of each line in
/// front when asked (the timestamp of the entry that began the line, as the kubelet does).
#[derive(Debug)]
pub struct Renderer {
    timestamps: bool,
    at_line_start: bool,
}

impl Renderer {
    pub fn new(timestamps: bool) -> Renderer {
        Renderer {
            timestamps,
            at_line_start: true,
        }
    }

    pub fn render(&mut self, entry: &Entry<'_>, out: &mut Vec<u8>) {
        if self.timestamps && self.at_line_start && !entry.timestamp.is_empty() {
            out.extend_from_slice(entry.timestamp);
            out.push(b' ');
        }
        out.extend_from_slice(entry.content);
        if !entry.partial {
            out.push(b'\n');
        }
        self.at_line_start = !entry.partial;
    }
}

/// The files of one log, oldest first: `N.log.K`, ..., `N.log.1`, `N.log`.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut older = Vec::new();
    let mut n = 1;
    while rotated(path, n).exists() {
        older.push(rotated(path, n));
        n += 1;
    }
    older.reverse();
    older.push(path.to_owned());
    older
}

/// Where reading starts so that the last `n` lines of the log come out: (index into
/// [`files`], byte offset). `None` means from the beginning.
pub fn tail_start(files: &[PathBuf], n: Option<u64>) -> io::Result<(usize, u64)> {
    let Some(n) = n else { return Ok((0, 0)) };
    if n == 0 {
        let last = files.len().saturating_sub(1);
        let len = files
            .last()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        return Ok((last, len));
    }
    let mut wanted = n as usize;
    for (index, path) in files.iter().enumerate().rev() {
        let mut text = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut text)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        // The offsets just after each full entry: a full entry ends a logical line.
        let mut ends = Vec::new();
        let mut line_start = 0;
        for (i, b) in text.iter().enumerate() {
            if *b == b'\n' {
                if !parse(&text[line_start..i]).partial {
                    ends.push(i + 1);
                }
                line_start = i + 1;
            }
        }
        if ends.len() > wanted {
            return Ok((index, ends[ends.len() - wanted - 1] as u64));
        }
        if ends.len() == wanted {
            return Ok((index, 0));
        }
        wanted -= ends.len();
    }
    Ok((0, 0))
}

/// Reads a log from a position, across rotations, handing out whole entries.
pub struct Reader {
    path: PathBuf,
    /// Files still to read after the current one (older ones, when starting in a rotated file).
    pending: Vec<PathBuf>,
    file: Option<File>,
    /// An entry read only in part so far.
    carry: Vec<u8>,
}

impl Reader {
    /// A reader of the log at `path` starting at `start` (from [`tail_start`]).
    pub fn open(path: &Path, start: (usize, u64)) -> io::Result<Reader> {
        let files = files(path);
        let index = start.0.min(files.len().saturating_sub(1));
        let mut pending: Vec<PathBuf> = files[index..].to_vec();
        pending.reverse();
        let mut reader = Reader {
            path: path.to_owned(),
            pending,
            file: None,
            carry: Vec::new(),
        };
        reader.next_file()?;
        if let Some(f) = &mut reader.file {
            f.seek(SeekFrom::Start(start.1))?;
        }
        Ok(reader)
    }

    fn next_file(&mut self) -> io::Result<bool> {
        while let Some(path) = self.pending.pop() {
            match File::open(&path) {
                Ok(f) => {
                    self.file = Some(f);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Reads what is there now and calls `each` for every complete entry. Returns how many
    /// bytes were read (0: nothing new for now).
    pub fn read_available(&mut self, each: &mut dyn FnMut(&Entry<'_>)) -> io::Result<usize> {
        let mut total = 0;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let Some(file) = &mut self.file else {
                if self.next_file()? {
                    continue;
                }
                // Nothing yet: the current file may appear later.
                if self.path.exists() {
                    self.pending.push(self.path.clone());
                    continue;
                }
                return Ok(total);
            };
            let n = file.read(&mut buffer)?;
            if n == 0 {
                if !self.pending.is_empty() {
                    self.file = None;
                    continue;
                }
                // At the end of the current file: if it was rotated away, the new one holds
                // what comes next.
                let ours = file.metadata()?.ino();
                match std::fs::metadata(&self.path) {
                    Ok(m) if m.ino() != ours => {
                        self.file = None;
                        self.pending.push(self.path.clone());
                        continue;
                    }
                    _ => return Ok(total),
                }
            }
            total += n;
            self.carry.extend_from_slice(&buffer[..n]);
            let mut consumed = 0;
            while let Some(i) = self.carry[consumed..].iter().position(|b| *b == b'\n') {
                let line = &self.carry[consumed..consumed + i];
                each(&parse(line));
                consumed += i + 1;
            }
            self.carry.drain(..consumed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn read_all(path: &Path, tail: Option<u64>, timestamps: bool) -> String {
        let start = tail_start(&files(path), tail).unwrap();
        let mut reader = Reader::open(path, start).unwrap();
        let mut renderer = Renderer::new(timestamps);
        let mut out = Vec::new();
        reader
            .read_available(&mut |e| renderer.render(e, &mut out))
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nano(at(0, 0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nano(at(1_475_713_029, 669_794_202)),
            "2016-10-06T00:17:09.669794202Z"
        );
    }

    #[test]
    fn lines_are_written_in_cri_format_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, LogLimits::default()).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\nhal", at(1, 5)).unwrap();
        w.write(Stream::Stderr, b"oops\n", at(2, 0)).unwrap();
        w.write(Stream::Stdout, b"f\n", at(3, 0)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:01.000000005Z stdout F one\n\
             1970-01-01T00:00:01.000000005Z stdout F two\n\
             1970-01-01T00:00:01.000000005Z stdout P hal\n\
             1970-01-01T00:00:02.000000000Z stderr F oops\n\
             1970-01-01T00:00:03.000000000Z stdout F f\n"
        );
        // A partial line and the stderr line interleave on the file, as they did in time; the
        // reader joins fragments as it meets them.
        assert_eq!(read_all(&path, None, false), "one\ntwo\nhaloops\nf\n");
        assert_eq!(
            read_all(&path, Some(2), true),
            "1970-01-01T00:00:01.000000005Z haloops\n1970-01-01T00:00:03.000000000Z f\n",
            "a line carries the timestamp of its first part"
        );
        assert_eq!(read_all(&path, Some(1), false), "f\n");
        assert_eq!(read_all(&path, Some(0), false), "");
        assert_eq!(read_all(&path, Some(100), false), "one\ntwo\nhaloops\nf\n");
    }

    #[test]
    fn long_lines_are_split_into_partial_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, LogLimits::default()).unwrap();
        w.max_line = 4;
        w.write(Stream::Stdout, b"abcdefghij\nk\n", at(0, 0))
            .unwrap();
        let tags: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| l.split(' ').nth(2).unwrap().to_owned())
            .collect();
        assert_eq!(tags, ["P", "P", "F", "F"]);
        assert_eq!(read_all(&path, None, false), "abcdefghij\nk\n");
        assert_eq!(read_all(&path, Some(1), false), "k\n");
        assert_eq!(read_all(&path, Some(2), false), "abcdefghij\nk\n");
    }

    #[test]
    fn files_rotate_at_the_size_cap_and_keep_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let limits = LogLimits {
            max_bytes: 200,
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, limits).unwrap();
        for i in 0..40 {
            w.write(
                Stream::Stdout,
                format!("line {i:02}\n").as_bytes(),
                at(0, 0),
            )
            .unwrap();
        }
        let all = files(&path);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(!rotated(&path, 3).exists());
        for f in &all {
            assert!(f.metadata().unwrap().len() <= 200, "{f:?}");
        }
        let text = read_all(&path, None, false);
        assert!(text.ends_with("line 38\nline 39\n"), "{text}");
        // What is kept is a contiguous suffix of what was written.
        let first: u32 = text[5..7].parse().unwrap();
        let expected: String = (first..40).map(|i| format!("line {i:02}\n")).collect();
        assert_eq!(text, expected);
        // tailLines reaches back into rotated files.
        assert_eq!(
            read_all(&path, Some(12), false),
            (28..40)
                .map(|i| format!("line {i:02}\n"))
                .collect::<String>()
        );
    }

    #[test]
    fn a_reader_follows_the_log_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let limits = LogLimits {
            max_bytes: 120,
            max_files: 2,
        };
        let mut w = LogWriter::open(&path, limits).unwrap();
        w.write(Stream::Stdout, b"a\n", at(0, 0)).unwrap();
        let mut reader = Reader::open(&path, (0, 0)).unwrap();
        let mut renderer = Renderer::new(false);
        let mut out = Vec::new();
        reader
            .read_available(&mut |e| renderer.render(e, &mut out))
            .unwrap();
        for line in ["b\n", "c\n", "d\n", "e\n"] {
            w.write(Stream::Stdout, line.as_bytes(), at(0, 0)).unwrap();
            reader
                .read_available(&mut |e| renderer.render(e, &mut out))
                .unwrap();
        }
        assert!(rotated(&path, 1).exists(), "the log rotated");
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\nc\nd\ne\n");
    }

    #[test]
    fn foreign_lines_are_read_whole() {
        assert_eq!(parse(b"plain text here").content, b"plain text here");
        let e = parse(b"2016-10-06T00:17:09.669794202Z stderr P x y");
        assert_eq!(
            (e.stream, e.partial, e.content),
            (&b"stderr"[..], true, &b"x y"[..])
        );
    }
}
