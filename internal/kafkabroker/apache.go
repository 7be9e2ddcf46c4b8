package kafkabroker

import (
	"archive/zip"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// ApacheOptions configures StartApache. The zero value runs
// DefaultKafkaVersion on free loopback ports with data in a temporary
// directory that Close removes.
type ApacheOptions struct {
	// Version of Apache Kafka (default DefaultKafkaVersion); see FetchApache
	// for where the jars come from.
	Version string
	// CacheDir is the jar cache root; see FetchOptions.CacheDir.
	CacheDir string
	// DataDir holds server.properties, the broker log (broker.log) and the
	// log dirs. If set it is kept on Close and reused by the next start
	// (storage is formatted only once); if empty a temporary directory is
	// used and removed on Close.
	DataDir string
	// Port of the PLAINTEXT listener on 127.0.0.1; 0 picks a free port.
	Port int
	// ControllerPort of the CONTROLLER listener on 127.0.0.1; 0 picks a
	// free port.
	ControllerPort int
	// Partitions is num.partitions for auto-created topics (default 1).
	Partitions int
	// AutoCreateTopics sets auto.create.topics.enable.
	AutoCreateTopics bool
	// Topics are created once the broker is ready: name → partitions.
	Topics map[string]int
	// Config holds extra server.properties entries; they override the
	// generated ones.
	Config map[string]string
	// JVMArgs replace the default JVM options (DefaultJVMArgs).
	JVMArgs []string
	// Java is the java executable (default $JAVA_HOME/bin/java, else "java"
	// on PATH). Kafka 4.x needs Java 17 or newer.
	Java string
	// Mvn is the Maven executable used on a cache miss (default "mvn").
	Mvn string
	// StartTimeout bounds storage format, JVM start and the readiness round
	// trip (default 2 minutes); the jar fetch is bounded by ctx only.
	StartTimeout time.Duration
	// StopTimeout is how long Close waits after SIGTERM before SIGKILL
	// (default 30 seconds).
	StopTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultJVMArgs are the JVM options of the broker when
// ApacheOptions.JVMArgs is empty: a modest heap, and serial GC plus the C1
// compiler only, which start markedly faster on small (2-core) machines than
// the G1/C2 defaults and are plenty for tests and a laptop.
func DefaultJVMArgs() []string {
	return []string{
		"-Xmx512m", "-Xms64m",
		"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-XX:+ExitOnOutOfMemoryError", "-XX:-UsePerfData",
		"-Djava.awt.headless=true",
	}
}

const (
	readyTopic = "_agentaudit_ready"
	brokerLog  = "broker.log"
	// maxPortAttempts bounds restarts after losing a free port to another
	// process between picking it and the JVM binding it.
	maxPortAttempts = 3
)

func (o *ApacheOptions) setDefaults() error {
	if o.Version == "" {
		o.Version = DefaultKafkaVersion
	}
	if o.Partitions == 0 {
		o.Partitions = 1
	}
	if len(o.JVMArgs) == 0 {
		o.JVMArgs = DefaultJVMArgs()
	}
	if o.Java == "" {
		o.Java = "java"
		if home := os.Getenv("JAVA_HOME"); home != "" {
			o.Java = filepath.Join(home, "bin", "java")
		}
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Partitions < 0:
		return fmt.Errorf("partitions must be positive, got %d", o.Partitions)
	case o.Port < 0 || o.Port > 65535:
		return fmt.Errorf("invalid port %d", o.Port)
	case o.ControllerPort < 0 || o.ControllerPort > 65535:
		return fmt.Errorf("invalid controller port %d", o.ControllerPort)
	case o.Port != 0 && o.Port == o.ControllerPort:
		return fmt.Errorf("port and controller port are both %d", o.Port)
	}
	for name, p := range o.Topics {
		if p < 1 {
			return fmt.Errorf("topic %s: partitions must be at least 1, got %d", name, p)
		}
	}
	return validVersion(o.Version)
}

// StartApache runs a real Apache Kafka broker (KRaft, combined broker and
// controller, node 1) as a child JVM: it fetches the jars (FetchApache),
// formats storage, starts `kafka.Kafka server.properties` and returns once a
// message produced with kafka-go has been fetched back. If the JVM exits
// during start, the error carries the tail of its log.
func StartApache(ctx context.Context, opts ApacheOptions) (*Broker, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("start apache kafka: %w", err)
	}
	log := opts.Logger
	java, err := exec.LookPath(opts.Java)
	if err != nil {
		return nil, fmt.Errorf("start apache kafka: find java: %w", err)
	}
	libs, err := FetchApache(ctx, FetchOptions{Version: opts.Version, CacheDir: opts.CacheDir, Mvn: opts.Mvn, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("start apache kafka: %w", err)
	}
	version, err := jarVersion(libs)
	if err != nil {
		return nil, fmt.Errorf("start apache kafka: %w", err)
	}
	if version != opts.Version {
		return nil, fmt.Errorf("start apache kafka: %s holds kafka-clients %s, want %s", libs, version, opts.Version)
	}

	dir, temp := opts.DataDir, opts.DataDir == ""
	if temp {
		if dir, err = os.MkdirTemp("", "agentaudit-kafka-"); err != nil {
			return nil, fmt.Errorf("start apache kafka: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start apache kafka: %w", err)
	}
	cleanup := func() {
		if temp {
			os.RemoveAll(dir)
		}
	}

	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	start := time.Now()
	var p *apacheProc
	for attempt := 1; ; attempt++ {
		p, err = startApacheOnce(ctx, &opts, java, libs, dir)
		if err == nil {
			break
		}
		fixedPorts := opts.Port != 0 || opts.ControllerPort != 0
		if !errors.Is(err, errPortInUse) || fixedPorts || attempt == maxPortAttempts {
			cleanup()
			return nil, fmt.Errorf("start apache kafka %s: %w", version, err)
		}
		log.Warn("kafka port taken before the broker bound it, retrying", slog.Int("attempt", attempt), slog.Any("error", err))
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Topics)) {
		if err := createTopic(ctx, p.addr, name, opts.Topics[name]); err != nil {
			p.stop(opts.StopTimeout)
			cleanup()
			return nil, fmt.Errorf("start apache kafka %s: %w", version, err)
		}
	}
	log.Info("apache kafka started", slog.String("version", version), slog.String("addr", p.addr),
		slog.String("log", p.logPath), slog.Duration("took", time.Since(start)))

	return &Broker{
		addr:    p.addr,
		kind:    KindApache,
		version: version,
		logPath: p.logPath,
		stop: func() error {
			err := p.stop(opts.StopTimeout)
			cleanup()
			if err != nil {
				return fmt.Errorf("stop apache kafka: %w", err)
			}
			log.Info("apache kafka stopped", slog.String("addr", p.addr))
			return nil
		},
	}, nil
}

var errPortInUse = errors.New("address already in use")

// apacheProc is a running broker JVM.
type apacheProc struct {
	addr    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{} // closed when cmd.Wait returned
	waitErr error         // valid after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// startApacheOnce writes the config, formats storage if needed, starts the
// JVM and waits until it serves a produce and a fetch.
func startApacheOnce(ctx context.Context, o *ApacheOptions, java, libs, dir string) (*apacheProc, error) {
	port, ctrlPort, err := pickPorts(o.Port, o.ControllerPort)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	props := filepath.Join(dir, "server.properties")
	logDirs := filepath.Join(dir, "kraft-logs")
	if err := os.WriteFile(props, serverProperties(o, port, ctrlPort, logDirs), 0o644); err != nil {
		return nil, err
	}
	log4j := filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(log4j, []byte(log4jProperties), 0o644); err != nil {
		return nil, err
	}
	classpath := filepath.Join(libs, "*")
	jvm := append(slices.Clone(o.JVMArgs), "-Dlog4j2.configurationFile="+log4j, "-cp", classpath)

	if _, err := os.Stat(filepath.Join(logDirs, "meta.properties")); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		if err := formatStorage(ctx, java, jvm, dir, props); err != nil {
			return nil, err
		}
		o.Logger.Debug("kafka storage formatted", slog.String("dir", logDirs), slog.Duration("took", time.Since(start)))
	} else if err != nil {
		return nil, err
	}

	logPath := filepath.Join(dir, brokerLog)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// Not CommandContext: ctx bounds the start, the broker lives until Close.
	cmd := exec.Command(java, append(jvm, "kafka.Kafka", props)...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	bindToParent(cmd)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", java, err)
	}
	p := &apacheProc{addr: addr, logPath: logPath, cmd: cmd, logFile: logFile, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	o.Logger.Debug("apache kafka jvm started", slog.Int("pid", cmd.Process.Pid), slog.String("addr", addr))

	start := time.Now()
	if err := p.waitReady(ctx); err != nil {
		p.stop(o.StopTimeout)
		return nil, err
	}
	o.Logger.Debug("apache kafka ready", slog.String("addr", addr), slog.Duration("took", time.Since(start)))
	return p, nil
}

// waitReady retries a topic create + produce + fetch round trip until it
// works, the JVM exits or ctx is done.
func (p *apacheProc) waitReady(ctx context.Context) error {
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		last = roundTrip(attempt, p.addr)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.exited:
			logTail := readTail(p.logPath, 40)
			err := fmt.Errorf("broker exited during start (%v); last lines of %s:\n%s", p.waitErr, p.logPath, logTail)
			if strings.Contains(logTail, "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("broker not ready: %w (last: %v); last lines of %s:\n%s",
				ctx.Err(), last, p.logPath, readTail(p.logPath, 40))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// roundTrip proves the broker serves clients: create a topic, produce a
// unique message to it and fetch it back, and find a group coordinator.
func roundTrip(ctx context.Context, addr string) error {
	if err := createTopic(ctx, addr, readyTopic, 1); err != nil {
		return err
	}
	if err := produceFetch(ctx, addr); err != nil {
		return err
	}
	return findGroupCoordinator(ctx, addr)
}

func produceFetch(ctx context.Context, addr string) error {
	var d kafka.Dialer
	conn, err := d.DialLeader(ctx, "tcp", addr, readyTopic, 0)
	if err != nil {
		return fmt.Errorf("dial leader: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	nonce := rand.Text()
	if _, err := conn.WriteMessages(kafka.Message{Value: []byte(nonce)}); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	end, err := conn.ReadLastOffset()
	if err != nil {
		return fmt.Errorf("read last offset: %w", err)
	}
	if _, err := conn.Seek(end-1, kafka.SeekAbsolute); err != nil {
		return fmt.Errorf("seek: %w", err)
	}
	m, err := conn.ReadMessage(1 << 20)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if string(m.Value) != nonce {
		return fmt.Errorf("fetch: got %q at offset %d, want %q", m.Value, m.Offset, nonce)
	}
	return nil
}

// findGroupCoordinator asks for a group coordinator until there is one.
// Kafka creates __consumer_offsets on the first such request and answers
// COORDINATOR_NOT_AVAILABLE until it has a leader; doing that here means the
// first consumer group of a test joins at once instead of backing off.
func findGroupCoordinator(ctx context.Context, addr string) error {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
	resp, err := c.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{
		Key:     readyTopic,
		KeyType: kafka.CoordinatorKeyTypeConsumer,
	})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return fmt.Errorf("find group coordinator: %w", err)
	}
	return nil
}

// stop sends SIGTERM (Kafka's shutdown hook then closes the logs cleanly),
// waits up to timeout, and kills the JVM if it is still there.
func (p *apacheProc) stop(timeout time.Duration) error {
	p.stopOnce.Do(func() {
		defer p.logFile.Close()
		select {
		case <-p.exited:
			p.stopErr = fmt.Errorf("broker had already exited: %v", p.waitErr)
			return
		default:
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			p.stopErr = fmt.Errorf("signal broker: %w", err)
		}
		select {
		case <-p.exited:
			if !cleanExit(p.waitErr) {
				p.stopErr = fmt.Errorf("broker exit: %w", p.waitErr)
			}
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
			<-p.exited
			p.stopErr = fmt.Errorf("broker did not stop within %v after SIGTERM; killed", timeout)
		}
	})
	return p.stopErr
}

// cleanExit reports whether the JVM ended normally after SIGTERM: status 0,
// 143 (128+SIGTERM, what the JVM exits with after its shutdown hooks) or
// killed by the signal itself.
func cleanExit(err error) bool {
	if err == nil {
		return true
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	if ee.ExitCode() == 128+int(syscall.SIGTERM) {
		return true
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// formatStorage runs kafka.tools.StorageTool format with a new cluster id.
func formatStorage(ctx context.Context, java string, jvm []string, dir, props string) error {
	id, err := newClusterID()
	if err != nil {
		return err
	}
	args := append(slices.Clone(jvm), "kafka.tools.StorageTool", "format", "-t", id, "-c", props)
	cmd := exec.CommandContext(ctx, java, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("format storage (%s ... kafka.tools.StorageTool format -t %s -c %s): %w\n%s",
			java, id, props, err, tail(string(out), 40))
	}
	return nil
}

// newClusterID returns a random Kafka Uuid in its string form (16 bytes,
// URL-safe base64 without padding), like `StorageTool random-uuid` but
// without starting a JVM. Like Kafka's Uuid.randomUuid it avoids ids that
// start with '-', which a command line would take for a flag.
func newClusterID() (string, error) {
	for {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id, nil
		}
	}
}

// serverProperties renders the KRaft config of a single combined node. The
// quorum is static (controller.quorum.voters), so a kept DataDir restarts
// fine on new ports.
func serverProperties(o *ApacheOptions, port, ctrlPort int, logDirs string) []byte {
	kv := [][2]string{
		{"process.roles", "broker,controller"},
		{"node.id", "1"},
		{"controller.quorum.voters", fmt.Sprintf("1@127.0.0.1:%d", ctrlPort)},
		{"listeners", fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", port, ctrlPort)},
		{"advertised.listeners", fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", port)},
		{"controller.listener.names", "CONTROLLER"},
		{"inter.broker.listener.name", "PLAINTEXT"},
		{"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"},
		{"log.dirs", logDirs},
		{"num.partitions", strconv.Itoa(o.Partitions)},
		{"auto.create.topics.enable", strconv.FormatBool(o.AutoCreateTopics)},
		{"default.replication.factor", "1"},
		{"min.insync.replicas", "1"},
		{"offsets.topic.replication.factor", "1"},
		{"offsets.topic.num.partitions", "1"},
		{"transaction.state.log.replication.factor", "1"},
		{"transaction.state.log.min.isr", "1"},
		{"transaction.state.log.num.partitions", "1"},
		{"share.coordinator.state.topic.replication.factor", "1"},
		{"share.coordinator.state.topic.min.isr", "1"},
		{"group.initial.rebalance.delay.ms", "0"},
		{"num.network.threads", "2"},
		{"num.io.threads", "2"},
		{"num.recovery.threads.per.data.dir", "1"},
	}
	for k, v := range o.Config {
		i := slices.IndexFunc(kv, func(e [2]string) bool { return e[0] == k })
		if i >= 0 {
			kv[i][1] = v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Config)) {
		if !slices.ContainsFunc(kv, func(e [2]string) bool { return e[0] == k }) {
			kv = append(kv, [2]string{k, o.Config[k]})
		}
	}
	var b strings.Builder
	b.WriteString("# Generated by agentaudit internal/kafkabroker.\n")
	for _, e := range kv {
		// Backslash is the only escape that matters in our values (paths).
		fmt.Fprintf(&b, "%s=%s\n", e[0], strings.ReplaceAll(e[1], `\`, `\\`))
	}
	return []byte(b.String())
}

// log4jProperties sends the broker's logs to stdout, which is the broker log
// file. The offsets topic would otherwise log every group's commit at INFO.
const log4jProperties = `status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
`

// pickPorts returns the wanted ports, choosing free loopback ports for the
// zero ones. Both probe listeners are open at once so they differ.
func pickPorts(port, ctrlPort int) (int, int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	pick := func(p int) (int, error) {
		if p != 0 {
			return p, nil
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick free port: %w", err)
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	p, err := pick(port)
	if err != nil {
		return 0, 0, err
	}
	c, err := pick(ctrlPort)
	if err != nil {
		return 0, 0, err
	}
	return p, c, nil
}

// jarVersion reads the Kafka version from kafka-clients-*.jar in libs
// (kafka/kafka-version.properties, what the broker itself reports).
func jarVersion(libs string) (string, error) {
	jars, err := filepath.Glob(filepath.Join(libs, "kafka-clients-*.jar"))
	if err != nil || len(jars) != 1 {
		return "", fmt.Errorf("find kafka-clients jar in %s: found %d (%v)", libs, len(jars), err)
	}
	zr, err := zip.OpenReader(jars[0])
	if err != nil {
		return "", fmt.Errorf("read kafka version: %w", err)
	}
	defer zr.Close()
	f, err := zr.Open("kafka/kafka-version.properties")
	if err != nil {
		return "", fmt.Errorf("read kafka version from %s: %w", jars[0], err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "version="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("read kafka version from %s: no version line (%v)", jars[0], sc.Err())
}

// readTail returns the last n lines of a file (at most its last 64 KiB).
func readTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return tail(string(b), n)
}
