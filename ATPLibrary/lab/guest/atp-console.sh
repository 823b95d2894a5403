# ATPLibrary lab: read by the root login shell on /dev/tty1.
# Hides the cursor (stable screenshots) and, at the first prompt, reports "console ready":
# /run/atp-console-ready for the guest agent and an ATP-CONSOLE-READY line on the serial log.
if [ "$(tty 2>/dev/null)" = /dev/tty1 ]; then
    printf '\033[?25l'
    PS1='\u@\h:\w\$ '
    cd "$HOME" || true
    __atp_console_ready() {
        if [ ! -e /run/atp-console-ready ]; then
            : > /run/atp-console-ready
            echo "ATP-CONSOLE-READY $(cut -d' ' -f1 /proc/uptime) $(hostname)" > /dev/ttyS0
        fi
    }
    PROMPT_COMMAND=__atp_console_ready
fi
