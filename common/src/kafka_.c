/*
 * librdkafka <-> libuv (see kafka_.h). librdkafka writes one byte to the pipe when an event is
 * enqueued on a queue it had seen served; the loop wakes up, drains the pipe and lets the owner
 * serve the queue with timeout 0. When the owner stops before the queue is empty (its budget),
 * a uv_idle handle calls it again on the next iteration, since no new byte will come for events
 * already queued.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "playhead/kafka_.h"

static void on_again(uv_idle_t *idle)
{
    ph_kafka_bridge_t *bridge = idle->data;
    if (bridge->_closing || !bridge->on_ready(bridge))
        uv_idle_stop(idle);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    ph_kafka_bridge_t *bridge = poll->data;
    char buf[256];
    (void)status, (void)events;
    while (read(bridge->_fds[0], buf, sizeof(buf)) > 0)
        ;
    if (!bridge->_closing && bridge->on_ready(bridge))
        uv_idle_start(&bridge->_again, on_again);
}

int ph_kafka_bridge_init(ph_kafka_bridge_t *bridge, uv_loop_t *loop, rd_kafka_queue_t *queue, ph_kafka_ready_cb on_ready,
                         void *data)
{
    memset(bridge, 0, sizeof(*bridge));
    bridge->queue = queue;
    bridge->on_ready = on_ready;
    bridge->data = data;
    if (pipe2(bridge->_fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    uv_poll_init(loop, &bridge->_poll, bridge->_fds[0]);
    uv_idle_init(loop, &bridge->_again);
    bridge->_poll.data = bridge->_again.data = bridge;
    uv_poll_start(&bridge->_poll, UV_READABLE, on_poll);
    rd_kafka_queue_io_event_enable(queue, bridge->_fds[1], "1", 1);
    /* events queued before the pipe was attached produced no byte */
    uv_idle_start(&bridge->_again, on_again);
    return 0;
}

void ph_kafka_bridge_kick(ph_kafka_bridge_t *bridge)
{
    if (!bridge->_closing)
        uv_idle_start(&bridge->_again, on_again);
}

static void on_handle_closed(uv_handle_t *h)
{
    ph_kafka_bridge_t *bridge = h->data;
    if (--bridge->_open != 0)
        return;
    close(bridge->_fds[0]);
    close(bridge->_fds[1]);
    if (bridge->_on_closed != NULL)
        bridge->_on_closed(bridge);
}

void ph_kafka_bridge_close(ph_kafka_bridge_t *bridge, void (*on_closed)(ph_kafka_bridge_t *bridge))
{
    if (bridge->_closing)
        return;
    bridge->_closing = 1;
    bridge->_on_closed = on_closed;
    bridge->_open = 2;
    rd_kafka_queue_io_event_enable(bridge->queue, -1, NULL, 0);
    uv_close((uv_handle_t *)&bridge->_poll, on_handle_closed);
    uv_close((uv_handle_t *)&bridge->_again, on_handle_closed);
}

int ph_kafka_conf_apply(rd_kafka_conf_t *conf, const ph_kafka_props_t *props, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; props != NULL && i < props->count; ++i) {
        char err[512];
        if (rd_kafka_conf_set(conf, props->keys[i], props->values[i], err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "Kafka property %s: %s", props->keys[i], err);
            return -1;
        }
    }
    return 0;
}
