/*
 * The book's own client (org.apache.zookeeper.book.Client, chapter 4) as a driver for
 * `mw bench --client book-java`: the same Java calls per task, in rounds.
 *
 *   java -cp CP org.apache.zookeeper.book.BookDriver HOST:PORT[/CHROOT]
 *
 * It connects once, then reads one line per round from stdin, "N TIMEOUT_SECONDS", submits N tasks
 * with the book's Client.submitTask (an asynchronous sequential create of /tasks/task- with a plain
 * string; then an exists watch on /status/<task>, a getData once it exists, a delete: the book's own
 * callbacks), waits until all N status znodes are deleted, and prints one JSON line:
 *   {"tasks": N, "seconds": S, "done_ms": [...]}   or   {"tasks": N, "left": L, "error": "..."}
 * One JVM serves every round, so the bench's warm-up round warms its JIT too, and the bench counts
 * its CPU over each round only. It is in the book's package to reuse Client as it is: its
 * constructor, submitTask and callbacks are package-private. The only change is the delete
 * callback, wrapped to count the result collected (the book's TaskObject latch opens at getData,
 * before the delete).
 */
package org.apache.zookeeper.book;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.zookeeper.AsyncCallback.VoidCallback;
import org.apache.zookeeper.KeeperException.Code;

public class BookDriver extends Client {
    private volatile CountDownLatch collected = new CountDownLatch(0);
    private volatile long[] doneAt = new long[0];
    private final AtomicInteger count = new AtomicInteger();
    private volatile long began;

    BookDriver(String hostPort) {
        super(hostPort);
        final VoidCallback book = taskDeleteCallback; // the book's own: retries on connection loss
        taskDeleteCallback = new VoidCallback() {
            public void processResult(int rc, String path, Object ctx) {
                book.processResult(rc, path, ctx);
                if (Code.get(rc) == Code.OK) {
                    int i = count.getAndIncrement();
                    if (i < doneAt.length) {
                        doneAt[i] = System.nanoTime();
                    }
                    collected.countDown();
                }
            }
        };
    }

    String round(int n, double timeout) throws InterruptedException {
        doneAt = new long[n];
        count.set(0);
        collected = new CountDownLatch(n);
        began = System.nanoTime();
        for (int i = 0; i < n; i++) {
            submitTask("task", new TaskObject());
        }
        if (!collected.await((long) (timeout * 1000), TimeUnit.MILLISECONDS)) {
            return "{\"tasks\": " + n + ", \"left\": " + collected.getCount() + ", \"error\": \"timeout\"}";
        }
        long ended = System.nanoTime();
        StringBuilder out = new StringBuilder();
        out.append("{\"tasks\": ").append(n).append(", \"seconds\": ").append((ended - began) / 1e9);
        out.append(", \"done_ms\": [");
        for (int i = 0; i < n; i++) {
            out.append(i == 0 ? "" : ", ").append((doneAt[i] - began) / 1e6);
        }
        return out.append("]}").toString();
    }

    public static void main(String[] args) throws Exception {
        BookDriver driver = new BookDriver(args[0]);
        driver.startZK();
        while (!driver.isConnected()) {
            Thread.sleep(10);
        }
        System.out.println("{\"connected\": true}");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null && !line.isBlank(); ) {
            String[] words = line.trim().split("\\s+");
            System.out.println(driver.round(Integer.parseInt(words[0]), Double.parseDouble(words[1])));
            System.out.flush();
        }
        driver.close();
    }
}
